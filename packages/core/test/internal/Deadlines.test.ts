import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Latch } from "effect"
import { TestClock } from "effect/testing"
import { Deadlines } from "../../src/internal/deadlines.ts"
import { CountingClock } from "../../src/testing.ts"

/** Waits until the clock reads `at`, on a latch of its own that `wake` opens. */
const until = (deadlines: Deadlines, at: number) =>
  Effect.suspend(() => {
    const latch = Latch.makeUnsafe(false)
    return Effect.andThen(deadlines.wake(at, latch), latch.await)
  })

/** Forks `count` waiters for `at` and returns how many have completed, as a function. */
const waiters = (deadlines: Deadlines, at: number, count: number) =>
  Effect.gen(function*() {
    let done = 0
    const fibers: Array<Fiber.Fiber<void>> = []
    for (let i = 0; i < count; i++) {
      fibers.push(yield* Effect.forkChild(Effect.andThen(until(deadlines, at), Effect.sync(() => void done++))))
    }
    yield* Effect.yieldNow
    return { done: () => done, fibers }
  })

describe("Deadlines", () => {
  it.effect("completes once the clock reads the deadline, not before", () =>
    Effect.gen(function*() {
      const deadlines = new Deadlines(yield* Clock.Clock)
      const waiting = yield* waiters(deadlines, 25, 3)
      yield* TestClock.adjust(24)
      assert.strictEqual(waiting.done(), 0)
      yield* TestClock.adjust(1)
      yield* Effect.yieldNow
      assert.strictEqual(waiting.done(), 3)
      assert.strictEqual(deadlines.armed, 0)
    }))

  it.effect("arms one timer per deadline, however many wait for it", () =>
    CountingClock.withCountingClock((counting) =>
      Effect.gen(function*() {
        const deadlines = new Deadlines(yield* Clock.Clock)
        const first = yield* waiters(deadlines, 25, 50)
        const second = yield* waiters(deadlines, 50, 50)
        assert.strictEqual(deadlines.armed, 2)
        yield* TestClock.adjust(50)
        yield* Effect.yieldNow
        assert.deepStrictEqual([first.done(), second.done()], [50, 50])
        assert.deepStrictEqual(counting.counts(), { started: 2, fired: 2 })
      })))

  it.effect("keeps the timer for the others when a waiter stops waiting", () =>
    Effect.gen(function*() {
      const deadlines = new Deadlines(yield* Clock.Clock)
      const waiting = yield* waiters(deadlines, 25, 3)
      yield* Fiber.interrupt(waiting.fibers[0]!) // the first waiter, whose wait armed the timer
      yield* TestClock.adjust(25)
      yield* Effect.yieldNow
      assert.strictEqual(waiting.done(), 2)
    }))

  it.effect("opens every latch registered for a deadline once the clock reads it, on one timer", () =>
    CountingClock.withCountingClock((counting) =>
      Effect.gen(function*() {
        const deadlines = new Deadlines(yield* Clock.Clock)
        const latches = Array.from({ length: 3 }, () => Latch.makeUnsafe(false))
        for (const latch of latches) yield* deadlines.wake(25, latch)
        yield* deadlines.wake(25, latches[0]!) // registered again: still one timer, opened once
        yield* TestClock.adjust(24)
        assert.deepStrictEqual(latches.map((latch) => latch.isOpen()), [false, false, false])
        yield* TestClock.adjust(1)
        yield* Effect.yieldNow
        assert.deepStrictEqual(latches.map((latch) => latch.isOpen()), [true, true, true])
        assert.deepStrictEqual([deadlines.armed, counting.counts().started], [0, 1])
      })))

  it.effect("opens a latch at once for a deadline already reached, with no timer", () =>
    CountingClock.withCountingClock((counting) =>
      Effect.gen(function*() {
        yield* TestClock.adjust(30)
        const deadlines = new Deadlines(yield* Clock.Clock)
        const latch = Latch.makeUnsafe(false)
        yield* deadlines.wake(30, latch)
        assert.isTrue(latch.isOpen())
        assert.deepStrictEqual([deadlines.armed, counting.counts().started], [0, 0])
      })))
})
