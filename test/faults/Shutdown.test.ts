/**
 * SIGTERM at random moments under load, again and again on the same database: every time the host drains and
 * flushes before it exits (code 0), so no accepted op is ever lost. After the last round the host is started once
 * more and everything is read back, through the host and straight from the database.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as fc from "fast-check"
import { succession } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const rounds = pick(5, 20)
const seed = 7

describe("SIGTERM under load", () => {
  it.live(`loses no accepted op over ${rounds} random shutdowns`, () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      // the moments to signal at: 200 ms to 2 s after each round's first acknowledged request (from the start of the
      // load, a cold host on a loaded machine could be signalled before it accepted anything: an idle shutdown)
      const delays = fc.sample(fc.integer({ min: 200, max: 2_000 }), { numRuns: rounds, seed })
      const history = new Load.History()
      const startOn = yield* succession({ DATABASE_URL: url })
      for (const [round, delay] of delays.entries()) {
        const host = yield* Effect.promise(startOn)
        const ackedBefore = countAcked(history)
        const load = Load.start(host.baseUrl, history, { sectors: 12, opsPerRequest: 8, pauseMs: 1, durableEvery: 6, seed })
        const deadline = Date.now() + 10_000
        while (countAcked(history) === ackedBefore) {
          assert.isBelow(Date.now(), deadline, `round ${round + 1}: nothing accepted within 10 s of the load starting`)
          yield* Effect.sleep(5)
        }
        yield* Effect.sleep(delay)
        host.signal("SIGTERM")
        const exit = yield* Effect.promise(() => host.exited)
        const diedAt = Date.now()
        yield* Effect.promise(load.stop)
        const settled = yield* Effect.promise(() => Verify.settle(url, history, diedAt))
        const shutdown = /shutdown: [^"]*/.exec(host.output())?.[0]
        console.log(`[sigterm] round ${round + 1}: signalled ${delay} ms after the first ack; ${countAcked(history) - ackedBefore} ops accepted; ${shutdown}`)
        assert.strictEqual(exit.code, 0, `round ${round + 1} exit:\n${host.output().slice(-2_000)}`)
        assert.deepStrictEqual(settled.lost, [], `round ${round + 1}: accepted ops lost`)
        assert.deepStrictEqual(settled.durableMissing, [])
      }
      const acceptedOps = countAcked(history)
      assert.isAbove(acceptedOps, rounds * 10, "the rounds ran under real load")

      // restart and read back everything
      const last = yield* Effect.promise(startOn)
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(last.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      console.log(`[sigterm] ${rounds} rounds, ${acceptedOps} accepted ops, all read back after a restart`)
      last.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => last.exited)).code, 0)
    }), { timeout: rounds * 15_000 + 60_000 })
})

const countAcked = (history: Load.History) =>
  [...history.sectors.values()].reduce((sum, s) => sum + s.acked.reduce((n, a) => n + a.ops.length, 0), 0)
