/**
 * PostgreSQL goes away under load and comes back. While it is gone the circuit opens, `/readyz` says 503 with the
 * circuit open, producers are answered at once with 503/429 and a `Retry-After` (never left hanging), and memory
 * stays bounded because what sectors hold is bounded by their mailboxes and pending-key limits. Once the database
 * is back the circuit closes within seconds, and every accepted op is in the database exactly once.
 *
 * CI stops the database for 8 s with a 2 s retry deadline (so the circuit opens early in the outage); the soak run
 * stops it for 30 s with the default resilience settings.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ControlledPg from "../support/ControlledPg.ts"
import { scoped } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { mb, metric, scrape, watchReadiness, watchRss } from "../support/Observe.ts"
import { pick, soak } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const outageMs = pick(8_000, 30_000)
const durableTimeoutMs = 3_000
const sectors = 24

describe("PostgreSQL stopped under load", () => {
  it.live(`opens the circuit, refuses with Retry-After, stays bounded, recovers, loses nothing (${outageMs / 1000} s outage)`, () =>
    Effect.gen(function*() {
      const pg = yield* Effect.acquireRelease(Effect.promise(ControlledPg.start), (pg) => Effect.promise(pg.dispose))
      const env: Record<string, string> = {
        DATABASE_URL: pg.url(),
        DURABLE_TIMEOUT: `${durableTimeoutMs} millis`,
        ...(soak ? {} : { RETRY_DEADLINE: "2 seconds" })
      }
      const host = yield* scoped(env)
      const memory = watchRss(host.child.pid!)
      const readiness = watchReadiness(host.baseUrl)
      const history = new Load.History()
      const load = Load.start(host.baseUrl, history, { sectors, opsPerRequest: 10, pauseMs: 2, durableEvery: 5 })

      yield* Effect.sleep(2_000)
      const before = memory.peak()
      const persistedBefore = metric(yield* Effect.promise(() => scrape(host.baseUrl)), "sectors_ops_persisted_total")
      assert.isAbove(persistedBefore, 0, "the load is being persisted before the outage")

      const downAt = Date.now()
      yield* Effect.promise(pg.stop)
      yield* Effect.sleep(outageMs)
      const duringOutage = { ...Object.fromEntries(history.statuses) }
      yield* Effect.promise(pg.start)
      const upAt = Date.now()

      // wait until the circuit is closed and ops are being persisted again
      let closedAt: number | undefined
      let persistingAt: number | undefined
      const persistedAtRestart = metric(yield* Effect.promise(() => scrape(host.baseUrl)), "sectors_ops_persisted_total")
      while (Date.now() - upAt < 60_000 && (closedAt === undefined || persistingAt === undefined)) {
        yield* Effect.sleep(100)
        const last = readiness.seen[readiness.seen.length - 1]
        if (closedAt === undefined && last?.status === 200 && last.circuit === "Closed") closedAt = last.at
        const persisted = metric(yield* Effect.promise(() => scrape(host.baseUrl)), "sectors_ops_persisted_total")
        if (persistingAt === undefined && persisted > persistedAtRestart) persistingAt = Date.now()
      }
      yield* Effect.sleep(2_000) // load continues after recovery
      yield* Effect.promise(load.stop)
      yield* Effect.promise(readiness.stop)
      memory.stop()

      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(host.baseUrl, history)), [])
      const text = yield* Effect.promise(() => scrape(host.baseUrl))
      host.signal("SIGTERM")
      const exit = yield* Effect.promise(() => host.exited)

      const outage = readiness.seen.filter((r) => r.at >= downAt && r.at <= upAt)
      const opened = outage.find((r) => r.status === 503 && r.circuit === "Open")
      const answered = [...history.statuses.values()].reduce((a, b) => a + b, 0)
      console.log(
        `[outage] ${outageMs / 1000} s down: circuit open after ${opened === undefined ? "never" : `${opened.at - downAt} ms`}; ` +
          `closed ${closedAt === undefined ? "never" : `${closedAt - upAt} ms`} and persisting ${
            persistingAt === undefined ? "never" : `${persistingAt - upAt} ms`
          } after the database was back; answers ${JSON.stringify(Object.fromEntries(history.statuses))} ` +
          `(during the outage ${JSON.stringify(duringOutage)}); slowest answer ${history.slowest} ms; ` +
          `RSS ${mb(before)} before, peak ${mb(memory.peak())}; retries ${metric(text, "sectors_persist_retries_total")}, ` +
          `failed persists ${metric(text, "sectors_persist_failures_total")}; ${answered} requests`
      )

      // the circuit opened and readiness said so
      assert.isDefined(opened, "the circuit opened during the outage and /readyz answered 503")
      // producers were answered, never left hanging: refusals carry Retry-After, nothing waits past DURABLE_TIMEOUT
      assert.isAbove((history.statuses.get(503) ?? 0) + (history.statuses.get(429) ?? 0), 0, "producers were refused")
      assert.strictEqual(history.missingRetryAfter, 0, "every 429/503 carried Retry-After")
      assert.strictEqual(history.unanswered, 0)
      assert.isBelow(history.slowest, durableTimeoutMs + 2_000, "no request waited past DURABLE_TIMEOUT")
      assert.deepStrictEqual(
        [...history.statuses.keys()].filter((s) => s >= 500 && s !== 503 && s !== 504),
        [],
        "no other server errors"
      )
      // memory stayed bounded: the outage held at most the sectors' bounded buffers
      assert.isBelow(memory.peak() - before, 200 * 1024 * 1024, "RSS grew by less than 200 MB")
      // recovery within seconds of the database returning: at most what is left of one open period
      // (CIRCUIT_OPEN_MAX, 5 s) plus one retry delay (RETRY_MAX_DELAY, 1 s) and the reconnect
      assert.isDefined(closedAt, "the circuit closed again")
      assert.isBelow(closedAt! - upAt, 5_000 + 1_000 + 2_000)
      // exactly once: every acknowledged op is durable and the rows are the fold of ops 1..persisted_seq
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(pg.url(), history, { everythingDurable: true })), [])
      assert.strictEqual(exit.code, 0, host.output().slice(-2_000))
    }), { timeout: outageMs + 120_000 })
})
