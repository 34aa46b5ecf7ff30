/**
 * The host's database connections are killed over and over (`pg_terminate_backend` every 300 ms) while it is
 * under load. A batch whose connection dies mid-transaction is rolled back by PostgreSQL and retried; a batch whose
 * commit went through but whose answer was lost is retried too, and the replay guard makes it a no-op. So nothing
 * is lost, nothing is applied twice, and once the killing stops the throughput comes back.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import postgres from "postgres"
import { scoped } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { metric, scrape } from "../support/Observe.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const killPhaseMs = pick(6_000, 60_000)
const phaseMs = 3_000

describe("connections killed under load", () => {
  it.live(`loses nothing and doubles nothing, and recovers its throughput (${killPhaseMs / 1000} s of kills)`, () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const database = new URL(url).pathname.slice(1)
      const admin = yield* Effect.acquireRelease(
        Effect.sync(() => postgres(Redacted.value(TestDatabase.serverUrl()), { max: 1, onnotice: () => {} })),
        (sql) => Effect.promise(() => sql.end())
      )
      const host = yield* scoped({ DATABASE_URL: url })
      const persisted = () => Effect.promise(async () => metric(await scrape(host.baseUrl), "sectors_ops_persisted_total"))
      const history = new Load.History()
      const load = Load.start(host.baseUrl, history, { sectors: 16, opsPerRequest: 10, pauseMs: 2, durableEvery: 4 })

      // before: the rate with healthy connections
      yield* Effect.sleep(1_000)
      const p0 = yield* persisted()
      yield* Effect.sleep(phaseMs)
      const p1 = yield* persisted()

      // kill every backend of the host's database every 300 ms
      let kills = 0
      const killUntil = Date.now() + killPhaseMs
      while (Date.now() < killUntil) {
        const killed = yield* Effect.promise(() =>
          admin<Array<{ killed: boolean }>>`
            SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
            WHERE datname = ${database} AND pid <> pg_backend_pid()`
        )
        kills += killed.filter((row) => row.killed).length
        yield* Effect.sleep(300)
      }
      const p2 = yield* persisted()

      // after: the rate once the killing stopped (a second to settle first)
      yield* Effect.sleep(1_000)
      const p3 = yield* persisted()
      yield* Effect.sleep(phaseMs)
      const p4 = yield* persisted()
      yield* Effect.promise(load.stop)

      const flushed = yield* Effect.promise(() => Verify.flushAll(host.baseUrl, history))
      const text = yield* Effect.promise(() => scrape(host.baseUrl))
      host.signal("SIGTERM")
      const exit = yield* Effect.promise(() => host.exited)

      const before = (p1 - p0) / (phaseMs / 1000)
      const during = (p2 - p1) / (killPhaseMs / 1000)
      const after = (p4 - p3) / (phaseMs / 1000)
      console.log(
        `[kills] ${kills} backends killed in ${killPhaseMs / 1000} s; persisted ops/s before ${before.toFixed(0)}, ` +
          `while killing ${during.toFixed(0)}, after ${after.toFixed(0)} (${(after / before * 100).toFixed(0)} % of before); ` +
          `retries ${metric(text, "sectors_persist_retries_total")}; failed persists ${metric(text, "sectors_persist_failures_total")}; ` +
          `answers ${JSON.stringify(Object.fromEntries(history.statuses))}; slowest ${history.slowest} ms`
      )

      assert.isAbove(kills, killPhaseMs / 300 / 2, "connections were really being killed")
      assert.isAbove(during, 0, "ops kept being persisted while connections died")
      // recovered: the rate after the kills is comparable to the rate before (same load, same run)
      assert.isAbove(after, before * 0.5, "throughput recovered once the killing stopped")
      assert.strictEqual(history.unanswered, 0)
      assert.deepStrictEqual(flushed, [])
      assert.deepStrictEqual([...history.statuses.keys()].filter((s) => s >= 500 && s !== 503), [], "no server errors but 503")
      // nothing lost, nothing doubled: every acknowledged op durable, rows exactly the fold of ops 1..persisted_seq
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      assert.strictEqual(exit.code, 0, host.output().slice(-2_000))
    }), { timeout: killPhaseMs + 90_000 })
})
