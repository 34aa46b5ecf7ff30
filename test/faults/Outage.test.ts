/**
 * PostgreSQL goes away under load and comes back — the field report's HA failover. Within the buffer budget the
 * host rides it out: it keeps accepting (202) and applying in memory, `/readyz` stays 200 and says the database is
 * down, nothing waits past `DURABLE_TIMEOUT`, and once the database is back the backlog drains and every accepted op
 * is in the database exactly once. Past the budget (`MAX_BUFFERED_BYTES`) new submissions get 429 `buffer-full` with
 * `Retry-After` at once, memory stays bounded, and everything that was accepted is persisted after the return.
 *
 * CI stops the database for 8 s; the soak run reproduces the report's failover table: outages of 5, 15, 30 and 60 s
 * at a moderate and at a heavy load, one line each (`[failover] …`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ControlledPg from "../support/ControlledPg.ts"
import { Summary } from "@sectors/workloads"
import { call, scoped } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { mb, metric, rss, scrape, watchReadiness, watchRss } from "../support/Observe.ts"
import { pick, soak } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const durableTimeoutMs = 3_000
const sectors = 24

/** A load of the failover table: how fast each of the 24 sectors sends 10-op requests. */
interface Pace {
  readonly name: string
  readonly pauseMs: number
  /** Ops per request; defaults to 10. */
  readonly opsPerRequest?: number
  /** Every n-th request of a sector asks `ack=durable` (and waits for it); defaults to never. */
  readonly durableEvery?: number
  /** Entities each sector writes (and how many of them are hot); defaults to Load's 40 with 6 hot. */
  readonly entities?: number
  readonly hot?: number
}
/** The CI run's load: every fifth request durable (those wait out the outage up to DURABLE_TIMEOUT, then 504). */
const mixed: Pace = { name: "moderate, every 5th request durable", pauseMs: 20, durableEvery: 5 }
const moderate: Pace = { name: "moderate", pauseMs: 20 }
const heavy: Pace = { name: "heavy", pauseMs: 2, opsPerRequest: 50 }
/** Every op on a key of its own: nothing collapses, so what is held grows with every op. */
const distinct: Pace = { name: "heavy, distinct keys", pauseMs: 2, opsPerRequest: 50, entities: 1_000_000, hot: 1_000_000 }

/** One op for the probe sector. */
const probeOps = (i: number) => ({ ops: [{ type: "set", entity: i % 10, component: "probe", data: { i } }] })

const sorted = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)

/**
 * Runs `pace` against a host, stops the database for `outageMs`, starts it again, waits for the backlog to drain,
 * then checks the database against every acknowledged op.
 */
const outage = (outageMs: number, pace: Pace, env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const pg = yield* Effect.acquireRelease(Effect.promise(ControlledPg.start), (pg) => Effect.promise(pg.dispose))
    const host = yield* scoped({ DATABASE_URL: pg.url(), DURABLE_TIMEOUT: `${durableTimeoutMs} millis`, ...env })
    const memory = watchRss(host.child.pid!)
    const readiness = watchReadiness(host.baseUrl)
    const history = new Load.History()
    const load = Load.start(host.baseUrl, history, {
      sectors,
      opsPerRequest: pace.opsPerRequest ?? 10,
      pauseMs: pace.pauseMs,
      durableEvery: pace.durableEvery,
      entities: pace.entities,
      hot: pace.hot
    })

    // a probe sector outside the load, resident before the outage: its durable acks time op→durable during catch-up
    const probeSector = 900
    assert.strictEqual((yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${probeSector}/ops`, probeOps(0)))).status, 202)
    yield* Effect.sleep(2_000)
    const before = memory.peak()
    assert.isAbove(metric(yield* Effect.promise(() => scrape(host.baseUrl)), "sectors_ops_persisted_total"), 0)

    const downAt = Date.now()
    const acceptedBefore = history.acceptedOps()
    // memory during the outage alone (the resident state grows with every new key whether or not the database is up)
    const atDown = yield* Effect.promise(() => rss(host.child.pid!))
    const outageMemory = watchRss(host.child.pid!)
    yield* Effect.promise(pg.stop)
    let peakBuffered = 0
    while (Date.now() - downAt < outageMs) {
      yield* Effect.sleep(250)
      peakBuffered = Math.max(peakBuffered, metric(yield* Effect.promise(() => scrape(host.baseUrl)), "sectors_buffered_bytes"))
    }
    const acceptedDuring = history.acceptedOps() - acceptedBefore
    outageMemory.stop()
    yield* Effect.promise(pg.start)
    const upAt = Date.now()
    let probing = true
    const probeMillis: Array<number> = []
    const probe = (async () => {
      for (let i = 1; probing; i++) {
        const started = Date.now()
        const answer = await call(host.baseUrl, "POST", `/sectors/${probeSector}/ops?ack=durable`, probeOps(i))
        if (answer.status === 200) probeMillis.push(Date.now() - started)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })()

    // catch-up: until what the outage piled up is durable (the gauge back under a tenth of its peak, or what a
    // steady load holds)
    let caughtUpAt: number | undefined
    const settled = Math.max(256 * 1024, peakBuffered / 10)
    while (caughtUpAt === undefined && Date.now() - upAt < 120_000) {
      yield* Effect.sleep(100)
      if (metric(yield* Effect.promise(() => scrape(host.baseUrl)), "sectors_buffered_bytes") < settled) caughtUpAt = Date.now()
    }
    yield* Effect.sleep(1_000) // load continues after recovery
    probing = false
    yield* Effect.promise(() => probe)
    yield* Effect.promise(load.stop)
    yield* Effect.promise(readiness.stop)
    memory.stop()

    const problems = [
      ...(yield* Effect.promise(() => Verify.flushAll(host.baseUrl, history))),
      ...(yield* Effect.promise(() => Verify.discrepancies(pg.url(), history, { everythingDurable: true })))
    ]
    host.signal("SIGTERM")
    const exit = yield* Effect.promise(() => host.exited)
    if (exit.code !== 0) problems.push(`exit ${exit.code}: ${host.output().slice(-2_000)}`)

    const during = readiness.seen.filter((r) => r.at >= downAt && r.at <= upAt)
    const refused = (history.statuses.get(429) ?? 0) + (history.statuses.get(503) ?? 0)
    if (history.missingRetryAfter > 0) problems.push(`${history.missingRetryAfter} refusals without Retry-After`)
    if (history.unanswered > 0) problems.push(`${history.unanswered} requests unanswered`)
    if (history.slowest >= durableTimeoutMs + 2_000) problems.push(`a request waited ${history.slowest} ms`)
    const others = [...history.statuses.keys()].filter((s) => s >= 500 && s !== 503 && s !== 504)
    if (others.length > 0) problems.push(`server errors ${others.join(", ")}`)
    const line = `[failover] ${outageMs / 1000} s outage, ${pace.name} load: ${acceptedDuring} ops accepted during it; ` +
      `refused ${refused} requests (${JSON.stringify(Object.fromEntries(history.statuses))}); ` +
      `lost ${problems.length === 0 ? 0 : "?"}; peak buffered ${mb(peakBuffered)}; RSS ${mb(atDown)} at the stop → ` +
      `peak ${mb(outageMemory.peak())} during the outage (${mb(before)} → ${mb(memory.peak())} over the run); catch-up ${caughtUpAt === undefined ? "never" : `${caughtUpAt - upAt} ms`}, ` +
      `op→durable during it p50 / p99 ${Summary.percentile(sorted(probeMillis), 50)} / ` +
      `${Summary.percentile(sorted(probeMillis), 99)} ms (${probeMillis.length} probes); /readyz during ` +
      `the outage ${during.filter((r) => r.status === 200).length} × 200, ${during.filter((r) => r.status !== 200).length} × other`
    console.log(line)
    return {
      line,
      refused,
      problems,
      readyDuring: during,
      caughtUp: caughtUpAt !== undefined,
      rssGrowth: memory.peak() - before,
      outageRssGrowth: outageMemory.peak() - atDown,
      peakBuffered
    }
  }).pipe(Effect.scoped)

describe("PostgreSQL stopped under load", () => {
  const outageMs = pick(8_000, 30_000)
  it.live(`rides out a ${outageMs / 1000} s outage within the budget: 0 refused, /readyz 200, 0 lost`, () =>
    Effect.gen(function*() {
      const result = yield* outage(outageMs, mixed)
      assert.deepStrictEqual(result.problems, [])
      assert.strictEqual(result.refused, 0, result.line)
      assert.isAbove(result.readyDuring.length, 0)
      assert.deepStrictEqual(result.readyDuring.filter((r) => r.status !== 200), [], "/readyz stayed 200 through the outage")
      assert.isTrue(result.caughtUp, result.line)
      assert.isAbove(result.peakBuffered, 0)
      assert.isBelow(result.rssGrowth, 200 * 1024 * 1024, result.line)
    }), { timeout: outageMs + 180_000 })

  const budget = pick(8, 64) * 1024 * 1024
  it.live(`past the budget (${budget / 1024 / 1024} MiB): 429 buffer-full at once, RSS growth during the outage within 3 × budget + 100 MiB, every accepted op persisted`, () =>
    Effect.gen(function*() {
      const result = yield* outage(pick(8_000, 30_000), distinct, { MAX_BUFFERED_BYTES: String(budget) })
      assert.deepStrictEqual(result.problems, [])
      assert.isAbove(result.refused, 0, result.line)
      assert.isAtMost(result.peakBuffered, budget, result.line)
      assert.isAbove(result.peakBuffered, budget * 0.9, result.line)
      assert.isBelow(result.outageRssGrowth, 3 * budget + 100 * 1024 * 1024, result.line)
      assert.isTrue(result.caughtUp, result.line)
    }), { timeout: 300_000 })

  if (soak) {
    for (const pace of [moderate, heavy]) {
      for (const seconds of [5, 15, 30, 60]) {
        it.live(`the failover table: ${seconds} s outage, ${pace.name} load`, () =>
          Effect.gen(function*() {
            const result = yield* outage(seconds * 1_000, pace)
            assert.deepStrictEqual(result.problems, [])
          }), { timeout: seconds * 1_000 + 240_000 })
      }
    }
  }
})
