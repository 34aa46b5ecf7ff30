import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect } from "effect"
import { TestClock } from "effect/testing"
import { Expiries } from "../../src/internal/expiries.ts"
import { CountingClock } from "../../src/testing.ts"

/** Moves the test clock `millis` on and lets the timer run. */
const adjust = (millis: number) => Effect.andThen(TestClock.adjust(millis), Effect.yieldNow)

describe("Expiries", () => {
  it.effect("expires each entry once the clock reads its deadline, not before, in deadline order", () =>
    Effect.gen(function*() {
      const expiries = new Expiries(yield* Clock.Clock)
      const expired: Array<string> = []
      yield* expiries.add(20, () => expired.push("b"))
      yield* expiries.add(10, () => expired.push("a")) // earlier than the last: in its place, the timer brought forward
      yield* expiries.add(30, () => expired.push("c"))
      yield* adjust(9)
      assert.deepStrictEqual(expired, [])
      yield* adjust(1)
      assert.deepStrictEqual(expired, ["a"])
      yield* adjust(20)
      assert.deepStrictEqual(expired, ["a", "b", "c"])
      assert.deepStrictEqual([expiries.size, expiries.armed], [0, false])
    }))

  it.effect("never expires a cancelled entry, and drops it once it reaches the front", () =>
    Effect.gen(function*() {
      const expiries = new Expiries(yield* Clock.Clock)
      const expired: Array<number> = []
      const entries = []
      for (let i = 1; i <= 5; i++) entries.push(yield* expiries.add(10 * i, () => expired.push(i)))
      expiries.cancel(entries[1]!) // not at the front: kept, marked
      assert.strictEqual(expiries.size, 5)
      expiries.cancel(entries[0]!) // the front: both go
      assert.strictEqual(expiries.size, 3)
      yield* adjust(50)
      assert.deepStrictEqual(expired, [3, 4, 5])
      // all cancelled: nothing left, no timer
      const last = yield* expiries.add(100, () => expired.push(6))
      expiries.cancel(last)
      assert.strictEqual(expiries.size, 0)
      yield* adjust(100)
      assert.deepStrictEqual(expired, [3, 4, 5])
      assert.isFalse(expiries.armed)
    }))

  it.effect("sleeps on one timer however many entries wait, and arms none once they are gone", () =>
    CountingClock.withCountingClock((counting) =>
      Effect.gen(function*() {
        const expiries = new Expiries(yield* Clock.Clock)
        let expired = 0
        for (let i = 0; i < 1_000; i++) yield* expiries.add(100 + (i % 10), () => void expired++)
        yield* adjust(110)
        assert.strictEqual(expired, 1_000)
        // a sleep to the earliest deadline, then one to each later deadline still held: never one per entry
        assert.isAtMost(counting.counts().started, 10)
        assert.isFalse(expiries.armed)
        counting.reset()
        yield* adjust(10_000)
        assert.deepStrictEqual(counting.counts(), { started: 0, fired: 0 })
      })
    ))
})
