/**
 * SIGKILL at random moments under load: nothing gets to flush, so what an `ack=accepted` op is promised ends at
 * memory. What `ack=durable` promised must hold: every op acknowledged as durable is in the database after the
 * crash, and the rows are exactly the fold of ops 1 … persisted_seq (no half-written batch). The ops that were
 * accepted but not yet durable when the process died are the write-behind window; the test reports how long
 * before the kill the oldest of them had been acknowledged, against `maxWait`.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as fc from "fast-check"
import { succession } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const rounds = pick(3, 15)
const seed = 11
/** The balanced profile's maxWait. */
const maxWaitMs = 25

describe("SIGKILL under load", () => {
  it.live(`keeps every durable ack over ${rounds} random kills and reports the write-behind window`, () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const delays = fc.sample(fc.integer({ min: 300, max: 2_000 }), { numRuns: rounds, seed })
      const history = new Load.History()
      const startOn = yield* succession({ DATABASE_URL: url })
      const windows: Array<number> = []
      let lostOps = 0
      /** Durable acks in the history (settling never drops one: a missing durable ack fails the round). */
      const durableAcks = () =>
        [...history.sectors.values()].reduce((n, s) => n + s.acked.filter((a) => a.durable).length, 0)
      for (const [round, delay] of delays.entries()) {
        const ackedBefore = durableAcks()
        const host = yield* Effect.promise(startOn)
        const load = Load.start(host.baseUrl, history, { sectors: 12, opsPerRequest: 8, pauseMs: 1, durableEvery: 3, seed })
        // the random moment is measured from the first durable ack of the round: a kill while the host is still
        // activating its first sectors (a cold start on a loaded CI machine took over 377 ms) would test nothing
        // the previous round did not, and a host that never acknowledges durably fails here
        const deadline = Date.now() + 10_000
        while (durableAcks() === ackedBefore) {
          assert.isBelow(Date.now(), deadline, `round ${round + 1}: no durable ack within 10 s of the load starting`)
          yield* Effect.sleep(5)
        }
        yield* Effect.sleep(delay)
        host.signal("SIGKILL")
        const diedAt = Date.now()
        yield* Effect.promise(() => host.exited)
        yield* Effect.promise(load.stop)
        const settled = yield* Effect.promise(() => Verify.settle(url, history, diedAt))
        const window = Math.max(0, ...settled.lost.map((l) => l.ackedMsBeforeDeath))
        const lost = settled.lost.reduce((n, l) => n + l.ops, 0)
        windows.push(window)
        lostOps += lost
        console.log(
          `[sigkill] round ${round + 1}: killed ${delay} ms after the first durable ack; ${lost} accepted ops not yet durable ` +
            `(oldest acknowledged ${window} ms before the kill; maxWait ${maxWaitMs} ms); ` +
            `${settled.durableMissing.length} durable acks missing`
        )
        assert.deepStrictEqual(settled.durableMissing, [], `round ${round + 1}: ops acknowledged as durable are missing`)
        // the rows are exactly the fold of what the watermark says is durable (no torn batch)
        assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      }

      // the next host takes over where the database says, and serves exactly that
      const last = yield* Effect.promise(startOn)
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(last.baseUrl, history)), [])
      const worst = Math.max(...windows)
      console.log(
        `[sigkill] ${rounds} kills: ${lostOps} accepted-not-durable ops lost in all; write-behind window at most ${worst} ms ` +
          `(maxWait ${maxWaitMs} ms + persist time + event-loop delay)`
      )
      // the window is maxWait plus a persist: a crash never takes ops that had long been acknowledged. Kills come
      // 300 ms – 2 s after a round's first durable ack, so a host that held accepted ops until shutdown would lose ops
      // acknowledged up to that long before the kill; the bound (maxWait + 1 s for the persist and the event loop of a loaded 2-core
      // machine; 248 ms was the worst seen) is below most rounds' length
      assert.isBelow(worst, maxWaitMs + 1_000, "no op stayed not-durable for long after its ack")
      last.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => last.exited)).code, 0)
    }), { timeout: rounds * 15_000 + 60_000 })
})
