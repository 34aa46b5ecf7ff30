/**
 * A sector's lifetime at its seams, end to end against the real host process: a sector first touched while
 * PostgreSQL is down serves as soon as it is back (a failed activation is not kept); a flood of reads of sectors
 * nobody wrote activates nothing, writes nothing and grows memory little (reads do not claim); and a sector that goes
 * idle during an outage longer than `SHUTDOWN_TIMEOUT` is not passivated with its ops — it keeps them and persists
 * them once the database returns.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import postgres from "postgres"
import * as ControlledPg from "../support/ControlledPg.ts"
import { call, scoped } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { mb, metric, rss, scrape } from "../support/Observe.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const controlledPg = Effect.acquireRelease(Effect.promise(ControlledPg.start), (pg) => Effect.promise(pg.dispose))

const sectorRows = async (url: string): Promise<number> => {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    const [row] = await sql<Array<{ count: string }>>`SELECT count(*)::text AS count FROM sectors`
    return Number(row!.count)
  } finally {
    await sql.end()
  }
}

describe("sector lifecycle end to end", () => {
  it.live("a sector first touched during an outage serves within 2 s of the database's return", () =>
    Effect.gen(function*() {
      const pg = yield* controlledPg
      const host = yield* scoped({ DATABASE_URL: pg.url(), RETRY_DEADLINE: "1 second" })
      yield* Effect.promise(pg.stop)
      const during = yield* Effect.promise(() => call(host.baseUrl, "GET", "/sectors/99"))
      assert.strictEqual(during.status, 503)
      assert.isNotNull(during.headers.get("retry-after"))
      const refused = yield* Effect.promise(() =>
        call(host.baseUrl, "POST", "/sectors/99/ops", { ops: [{ type: "delete", entity: 1 }] })
      )
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.body.detail.includes("ECONNREFUSED"), false, refused.body.detail)
      // a client obeying Retry-After: 1 keeps asking; the database comes back after a few of its tries
      let upAt: number | undefined
      let servedAt: number | undefined
      const client = Effect.promise(async () => {
        const started = Date.now()
        while (servedAt === undefined && Date.now() - started < 30_000) {
          const answer = await call(host.baseUrl, "POST", "/sectors/99/ops", {
            ops: [{ type: "set", entity: 1, component: "c", data: { x: 1 } }]
          })
          if (answer.status === 202) servedAt = Date.now()
          else await new Promise((resolve) => setTimeout(resolve, 1_000))
        }
      })
      const back = Effect.promise(async () => {
        await new Promise((resolve) => setTimeout(resolve, 3_000))
        await pg.start()
        upAt = Date.now()
      })
      yield* Effect.all([client, back], { concurrency: 2 })
      assert.isDefined(servedAt, host.output().slice(-2_000))
      console.log(`[lifecycle] first write served ${servedAt! - upAt!} ms after the database was back`)
      assert.isBelow(servedAt! - upAt!, 2_000)
      const status = yield* Effect.promise(() => call(host.baseUrl, "GET", "/sectors/99"))
      assert.strictEqual(status.status, 200)
    }), { timeout: 90_000 })

  const reads = 20_000
  it.live(`${reads} distinct reads of unwritten sectors activate nothing, add no row and grow RSS by under 150 MiB`, () =>
    Effect.gen(function*() {
      const pg = yield* controlledPg
      const host = yield* scoped({ DATABASE_URL: pg.url(), MAX_ACTIVE_SECTORS: "1000" })
      // one write, so that the tables exist and one sector is resident
      assert.strictEqual(
        (yield* Effect.promise(() => call(host.baseUrl, "POST", "/sectors/1/ops", { ops: [{ type: "delete", entity: 1 }] })))
          .status,
        202
      )
      const rowsBefore = yield* Effect.promise(() => sectorRows(pg.url()))
      const before = yield* Effect.promise(() => rss(host.child.pid!))
      let next = 1_000
      const statuses = new Map<number, number>()
      let mostActive = 0
      const worker = async () => {
        while (next < 1_000 + reads) {
          const sector = next++
          const path = sector % 2 === 0 ? `/sectors/${sector}/entities/7` : `/sectors/${sector}`
          const response = await fetch(`${host.baseUrl}${path}`)
          await response.arrayBuffer()
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
          if (sector % 2_000 === 0) {
            mostActive = Math.max(mostActive, metric(await scrape(host.baseUrl), "sectors_active"))
          }
        }
      }
      const started = Date.now()
      yield* Effect.promise(() => Promise.all(Array.from({ length: 32 }, worker)))
      const after = yield* Effect.promise(() => rss(host.child.pid!))
      const rowsAfter = yield* Effect.promise(() => sectorRows(pg.url()))
      const listed = (yield* Effect.promise(() => call(host.baseUrl, "GET", "/sectors"))).body
      console.log(
        `[lifecycle] ${reads} reads in ${Date.now() - started} ms: ${JSON.stringify(Object.fromEntries(statuses))}; ` +
          `RSS ${mb(before)} → ${mb(after)}; sectors rows ${rowsBefore} → ${rowsAfter}; most active ${mostActive}`
      )
      assert.deepStrictEqual(Object.fromEntries(statuses), { 200: reads / 2, 404: reads / 2 })
      assert.strictEqual(rowsAfter, rowsBefore)
      assert.isAtMost(mostActive, 1)
      assert.deepStrictEqual([listed.active, listed.maxActiveSectors, listed.sectors.length], [1, 1000, 1])
      assert.isBelow(after - before, 150 * 1024 * 1024)
    }), { timeout: 180_000 })

  const outageMs = pick(6_000, 20_000)
  it.live(`passivation inside an outage longer than SHUTDOWN_TIMEOUT loses nothing (${outageMs / 1000} s outage)`, () =>
    Effect.gen(function*() {
      const pg = yield* controlledPg
      const host = yield* scoped({
        DATABASE_URL: pg.url(),
        PASSIVATE_AFTER: "1 second",
        SHUTDOWN_TIMEOUT: "1 second",
        RETRY_DEADLINE: "1 second",
        MAX_WAIT: "500 millis",
        MIN_BATCH: "1000"
      })
      const history = new Load.History()
      const load = Load.start(host.baseUrl, history, { sectors: 8, opsPerRequest: 5, pauseMs: 20 })
      yield* Effect.sleep(1_000)
      // the database goes away with ops still pending (MAX_WAIT 500 ms), and the load stops: every sector goes idle
      yield* Effect.promise(pg.stop)
      yield* Effect.promise(load.stop)
      const accepted = history.acceptedOps()
      yield* Effect.sleep(outageMs)
      const held = metric(yield* Effect.promise(() => scrape(host.baseUrl)), "sectors_active")
      yield* Effect.promise(pg.start)
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(host.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(pg.url(), history, { everythingDurable: true })), [])
      console.log(`[lifecycle] ${accepted} ops accepted before a ${outageMs} ms outage; ${held} sectors stayed resident through it`)
      assert.isAbove(held, 0, "sectors holding ops stayed resident through the outage")
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0, host.output().slice(-2_000))
    }), { timeout: outageMs + 90_000 })

  it.live("SIGTERM while the database is down: flushes until SHUTDOWN_TIMEOUT, then exits 1 saying what was not flushed", () =>
    Effect.gen(function*() {
      const pg = yield* controlledPg
      const host = yield* scoped({ DATABASE_URL: pg.url(), SHUTDOWN_TIMEOUT: "2 seconds" })
      assert.strictEqual((yield* Effect.promise(() => call(host.baseUrl, "POST", "/sectors/3/ops?ack=durable", { ops: [{ type: "delete", entity: 1 }] }))).status, 200)
      yield* Effect.promise(pg.stop)
      // accepted while the database is away (the host rides it out), then told to stop
      const accepted = yield* Effect.promise(() =>
        call(host.baseUrl, "POST", "/sectors/3/ops", { ops: [{ type: "set", entity: 1, component: "c", data: { x: 1 } }] })
      )
      assert.strictEqual(accepted.status, 202)
      const signalledAt = Date.now()
      host.signal("SIGTERM")
      const exit = yield* Effect.promise(() => host.exited)
      assert.strictEqual(exit.code, 1, host.output().slice(-2_000))
      assert.isBelow(Date.now() - signalledAt, 10_000)
      assert.include(host.output(), "1 unflushed")
    }), { timeout: 60_000 })
})
