import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { Expiries, type Expiry } from "../../src/internal/expiries.ts"
import { CountingClock } from "../../src/testing.ts"

/** Moves the test clock `millis` on and lets the timer run. */
const adjust = (millis: number) => Effect.andThen(TestClock.adjust(millis), Effect.yieldNow)

describe("Expiries", () => {
  it.effect("expires each entry once the clock reads its deadline, not before, in deadline order", () =>
    Effect.gen(function*() {
      const expiries = new Expiries(yield* Clock.Clock, yield* Effect.context<never>())
      const expired: Array<string> = []
      expiries.add(20, () => expired.push("b"))
      expiries.add(10, () => expired.push("a")) // earlier than the last: in its place, the timer brought forward
      expiries.add(30, () => expired.push("c"))
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
      const expiries = new Expiries(yield* Clock.Clock, yield* Effect.context<never>())
      const expired: Array<number> = []
      const entries = []
      for (let i = 1; i <= 5; i++) entries.push(expiries.add(10 * i, () => expired.push(i)))
      expiries.cancel(entries[1]!) // not at the front: kept, marked
      assert.strictEqual(expiries.size, 5)
      expiries.cancel(entries[0]!) // the front: both go
      assert.strictEqual(expiries.size, 3)
      yield* adjust(50)
      assert.deepStrictEqual(expired, [3, 4, 5])
      // all cancelled: nothing left, no timer
      const last = expiries.add(100, () => expired.push(6))
      expiries.cancel(last)
      assert.strictEqual(expiries.size, 0)
      yield* adjust(100)
      assert.deepStrictEqual(expired, [3, 4, 5])
      assert.isFalse(expiries.armed)
    }))

  it.effect("property: every entry not cancelled expires once, when the clock first reads its deadline; no cancelled one ever", () =>
    Effect.gen(function*() {
      const clock = yield* Clock.Clock
      const step = fc.oneof(
        fc.record({ _tag: fc.constant("add" as const), after: fc.integer({ min: 0, max: 60 }) }),
        fc.record({ _tag: fc.constant("cancel" as const), pick: fc.nat() }),
        fc.record({ _tag: fc.constant("adjust" as const), millis: fc.integer({ min: 0, max: 25 }) })
      )
      for (const steps of fc.sample(fc.array(step, { maxLength: 80 }), { numRuns: 200, seed: 17 })) {
        const expiries = new Expiries(clock, yield* Effect.context<never>())
        const entries: Array<{ at: number; expiry: Expiry | undefined; cancelled: boolean; expiredAt: Array<number> }> = []
        // every case ends with the clock past every deadline
        for (const s of [...steps, { _tag: "adjust" as const, millis: 100 }]) {
          if (s._tag === "add") {
            const entry = {
              at: clock.currentTimeMillisUnsafe() + s.after,
              expiry: undefined as Expiry | undefined,
              cancelled: false,
              expiredAt: [] as Array<number>
            }
            entry.expiry = expiries.add(entry.at, () => void entry.expiredAt.push(clock.currentTimeMillisUnsafe()))
            entries.push(entry)
          } else if (s._tag === "cancel") {
            const open = entries.filter((e) => !e.cancelled && e.expiredAt.length === 0)
            const entry = open[s.pick % Math.max(1, open.length)]
            if (entry !== undefined) {
              entry.cancelled = true
              expiries.cancel(entry.expiry!)
            }
          } else {
            for (let i = 0; i < s.millis; i++) yield* adjust(1)
          }
        }
        for (const entry of entries) assert.deepStrictEqual(entry.expiredAt, entry.cancelled ? [] : [entry.at])
        assert.deepStrictEqual([expiries.size, expiries.armed], [0, false])
      }
    }))

  it.effect("compacts the cancelled entries held behind a live one once they are most of the queue", () =>
    Effect.gen(function*() {
      const expiries = new Expiries(yield* Clock.Clock, yield* Effect.context<never>())
      const expired: Array<number> = []
      const entries = []
      // the first wait is still under way; every later one ends first
      for (let i = 0; i < 2_000; i++) entries.push(expiries.add(1_000 + i, () => expired.push(i)))
      for (const entry of entries.slice(1)) expiries.cancel(entry)
      assert.isBelow(expiries.size, 1_000) // compacted once 1,024 were cancelled, half of the queue or more
      yield* adjust(5_000)
      assert.deepStrictEqual(expired, [0])
      assert.deepStrictEqual([expiries.size, expiries.armed], [0, false])
    }))

  it.effect("sleeps on one timer however many entries wait, and arms none once they are gone", () =>
    CountingClock.withCountingClock((counting) =>
      Effect.gen(function*() {
        const expiries = new Expiries(yield* Clock.Clock, yield* Effect.context<never>())
        let expired = 0
        for (let i = 0; i < 1_000; i++) expiries.add(100 + (i % 10), () => void expired++)
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
