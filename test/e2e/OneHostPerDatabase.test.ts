/**
 * A standalone host is the only one on its database (issue #20): a second host started on the same DATABASE_URL
 * exits with code 1 and one line naming the first (its pid and HTTP address) and saying how to run several hosts
 * instead; once the first has stopped — by SIGTERM after its final flush, or killed outright, when PostgreSQL ends
 * its session and frees the lock — the next one starts. A host whose lock session is cut takes the lock again; if
 * another holder took it in between, the host shuts down in order and exits 1.
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { HostLock } from "@sectors/sink-pg"
import { Effect, Redacted } from "effect"
import postgres from "postgres"
import { call, runToExit, scoped } from "../support/HostProcess.ts"

/** One op setting entity 1's `a` to `{ v }`. */
const op = (v: number) => ({ ops: [{ type: "set", entity: 1, component: "a", data: { v } }] })

describe("one standalone host per database", () => {
  it.live("refuses a second host on the same DATABASE_URL with one line naming the first and how to cluster", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const first = yield* scoped({ DATABASE_URL: url })
      const address = new URL(first.baseUrl).host

      const port = yield* Port.free
      const { code, output } = yield* Effect.promise(() =>
        runToExit({ DATABASE_URL: url, PORT: String(port), LOG_FORMAT: "json" }, 20_000)
      )
      assert.strictEqual(code, 1, output)
      const lines = output.trim().split("\n")
      assert.strictEqual(lines.length, 1, output)
      const entry = JSON.parse(lines[0]!) as { message: string; level: string }
      console.log(`[one host per database] the refused host said: ${entry.message}`)
      assert.strictEqual(entry.level, "ERROR")
      assert.include(entry.message, "sector-host could not start: this database is already used by another standalone host")
      assert.include(entry.message, `pid=${first.child.pid} `, "names the first host's pid")
      assert.include(entry.message, `http=${address}`, "names the first host's address")
      assert.include(entry.message, "to run several hosts on one database, run them as a cluster (RUNNER_PORT)")
      assert.notInclude(entry.message, new URL(url).password, "no password in the line")

      // the first host is untouched: it serves, and it still holds the database
      const posted = yield* Effect.promise(() => call(first.baseUrl, "POST", "/sectors/1/ops?ack=durable", op(1)))
      assert.strictEqual(posted.status, 200, JSON.stringify(posted.body))
      assert.strictEqual((yield* Effect.promise(() => runToExit({ DATABASE_URL: url, PORT: String(port) }, 20_000))).code, 1)
      first.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => first.exited)).code, 0, first.output())
    }), { timeout: 90_000 })

  it.live("holds the database until its final flush is done, then lets the next host start (SIGTERM)", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const admin = yield* Effect.acquireRelease(
        Effect.sync(() => postgres(url, { max: 1, onnotice: () => {} })),
        (sql) => Effect.promise(() => sql.end())
      )
      // the first holds what it accepts until its shutdown flushes it: 60 sectors of 1000 rows, a flush long enough
      // to be watched
      const perSector = 1000
      const first = yield* scoped({ DATABASE_URL: url, MIN_BATCH: "100000", MAX_BATCH: "100000", MAX_WAIT: "10 minutes" })
      const sectors = Array.from({ length: 60 }, (_, i) => 100 + i)
      const batch = { ops: Array.from({ length: perSector }, (_, i) => ({ type: "set", entity: i, component: "a", data: { i } })) }
      for (const sector of sectors) {
        const posted = yield* Effect.promise(() => call(first.baseUrl, "POST", `/sectors/${sector}/ops`, batch))
        assert.strictEqual(posted.status, 202, JSON.stringify(posted.body))
      }

      // while it shuts down: whenever the lock is seen free, everything must already be durable
      const watched = yield* Effect.promise(async () => {
        let held = 0
        let free = 0
        let early = 0
        first.signal("SIGTERM")
        while (first.child.exitCode === null && first.child.signalCode === null) {
          const [locks] = await admin<Array<{ n: number }>>`
            SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
              AND ((classid::bigint << 32) | objid::bigint) = ${String(HostLock.key)}::bigint`
          if (locks!.n > 0) {
            held++
            continue
          }
          free++
          const [durable] = await admin<Array<{ ops: number }>>`SELECT coalesce(sum(persisted_seq), 0)::int AS ops FROM sector_watermarks`
          if (durable!.ops < sectors.length * perSector) early++
        }
        return { held, free, early }
      })
      console.log(
        `[one host per database] during the shutdown: lock seen held ${watched.held} times, free ${watched.free} ` +
          `(${watched.early} of them before the flush was durable)`
      )
      assert.strictEqual(watched.early, 0, "the lock was free before the final flush was durable")
      assert.isAbove(watched.held, 0, "the lock was watched while the host shut down")
      assert.strictEqual((yield* Effect.promise(() => first.exited)).code, 0, first.output())

      const second = yield* scoped({ DATABASE_URL: url })
      for (const sector of [sectors[0]!, sectors[sectors.length - 1]!]) {
        const status = yield* Effect.promise(() => call(second.baseUrl, "GET", `/sectors/${sector}`))
        assert.strictEqual(status.body.persistedSeq, perSector, JSON.stringify(status.body))
      }
      second.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => second.exited)).code, 0, second.output())
    }), { timeout: 90_000 })

  it.live("lets the next host start at once after the first was SIGKILLed (its session ends with its socket)", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const first = yield* scoped({ DATABASE_URL: url })
      const posted = yield* Effect.promise(() => call(first.baseUrl, "POST", "/sectors/3/ops?ack=durable", op(3)))
      assert.strictEqual(posted.status, 200, JSON.stringify(posted.body))
      first.signal("SIGKILL")
      yield* Effect.promise(() => first.exited)

      const killedAt = Date.now()
      const second = yield* scoped({ DATABASE_URL: url })
      const tookMs = Date.now() - killedAt
      console.log(`[one host per database] the next host was listening ${tookMs} ms after the first was killed`)
      // a start takes a second or two on this machine; a host waiting out a lock nobody frees would be refused
      assert.isBelow(tookMs, 15_000)
      assert.notInclude(second.output(), "could not start")
      const entity = yield* Effect.promise(() => call(second.baseUrl, "GET", "/sectors/3/entities/1"))
      assert.deepStrictEqual(entity.body.components, { a: { v: 3 } })
      second.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => second.exited)).code, 0, second.output())
    }), { timeout: 90_000 })

  it.live("shuts down and exits 1 when another holder took the lock while its lock session was cut", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const host = yield* scoped({ DATABASE_URL: url })
      const posted = yield* Effect.promise(() => call(host.baseUrl, "POST", "/sectors/4/ops?ack=durable", op(4)))
      assert.strictEqual(posted.status, 200, JSON.stringify(posted.body))
      const admin = yield* Effect.acquireRelease(
        Effect.sync(() => postgres(url, { max: 1, onnotice: () => {} })),
        (sql) => Effect.promise(() => sql.end())
      )
      const sessions = yield* Effect.promise(() =>
        admin<Array<{ pid: number }>>`
          SELECT pid FROM pg_stat_activity WHERE application_name LIKE ${`sector-host pid=${host.child.pid} %`}`
      )
      assert.strictEqual(sessions.length, 1, "one lock session, named after the host")
      yield* Effect.promise(() => admin`SELECT pg_terminate_backend(${sessions[0]!.pid})`)
      // another holder takes the lock before the host tries again (it waits a second first)
      yield* HostLock.make({ url: Redacted.make(url), identity: "intruder pid=1 http=127.0.0.1:1" })

      const exit = yield* Effect.promise(() => host.exited)
      assert.strictEqual(exit.code, 1, host.output())
      assert.include(host.output(), "sector-host lost the database to another host")
      assert.include(host.output(), "intruder pid=1 http=127.0.0.1:1")
      assert.notInclude(host.output(), "could not start")
    }), { timeout: 90_000 })
})
