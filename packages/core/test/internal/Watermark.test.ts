import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber } from "effect"
import * as fc from "fast-check"
import { TestClock } from "effect/testing"
import { Expiries } from "../../src/internal/expiries.ts"
import { Watermark } from "../../src/internal/watermark.ts"

const never = () => undefined

/** A watermark at `seq` with its own deadlines' timer (on the test's clock). */
const watermarkAt = (seq: number, at: number | undefined) =>
  Effect.gen(function*() {
    const expiries = new Expiries(yield* Clock.Clock, yield* Effect.context<never>())
    return { watermark: new Watermark<string>(seq, at, expiries), expiries }
  })

describe("Watermark", () => {
  it.effect("resolves exactly the waiters it passes, in seq order", () =>
    Effect.gen(function*() {
      const { watermark } = yield* watermarkAt(0, undefined)
      const resolved: Array<number> = []
      for (const seq of [5, 2, 9, 2]) {
        yield* Effect.forkChild(Effect.andThen(watermark.await(seq, never), Effect.sync(() => resolved.push(seq))))
      }
      yield* Effect.yieldNow
      watermark.advance(5, 100)
      yield* Effect.yieldNow
      assert.deepStrictEqual(resolved, [2, 2, 5])
      assert.strictEqual(watermark.waiting, 1)
      assert.deepStrictEqual([watermark.seq, watermark.at], [5, 100])
    }))

  it.effect("never moves down", () =>
    Effect.gen(function*() {
      const { watermark } = yield* watermarkAt(7, 1)
      watermark.advance(3, 2)
      assert.deepStrictEqual([watermark.seq, watermark.at], [7, 1])
    }))

  it.effect("answers a wait at or below the watermark at once, and a refused wait with the refusal", () =>
    Effect.gen(function*() {
      const { watermark } = yield* watermarkAt(4, undefined)
      yield* watermark.await(4, () => "stopped")
      const refused = yield* Effect.exit(watermark.await(5, () => "stopped"))
      assert.deepStrictEqual(refused, Exit.fail("stopped"))
      assert.strictEqual(watermark.waiting, 0)
    }))

  it.effect("removes a waiter the moment its wait times out, not when the watermark passes it", () =>
    Effect.gen(function*() {
      const { watermark } = yield* watermarkAt(0, undefined)
      const fiber = yield* Effect.forkChild(Effect.timeoutOption(watermark.await(10, never), 50))
      yield* Effect.yieldNow
      assert.strictEqual(watermark.waiting, 1)
      yield* TestClock.adjust(50)
      yield* Fiber.join(fiber)
      assert.strictEqual(watermark.waiting, 0)
    }))

  it.effect("fails a wait with its deadline's error once the clock reads it, and drops the deadline of one passed first", () =>
    Effect.gen(function*() {
      const { expiries, watermark } = yield* watermarkAt(0, undefined)
      const passed = yield* Effect.forkChild(watermark.await(2, never, { at: 50, timedOut: () => "timed out" }))
      const late = yield* Effect.forkChild(watermark.await(9, never, { at: 50, timedOut: () => "timed out" }))
      yield* Effect.yieldNow
      assert.deepStrictEqual([watermark.waiting, expiries.size], [2, 2])
      watermark.advance(2, 10)
      assert.deepStrictEqual(yield* Fiber.await(passed), Exit.void)
      assert.strictEqual(expiries.size, 1) // its deadline went with it
      yield* TestClock.adjust(49)
      assert.isUndefined(late.pollUnsafe())
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Fiber.await(late), Exit.fail("timed out"))
      assert.deepStrictEqual([watermark.waiting, expiries.size, expiries.armed], [0, 0, false])
    }))

  it.effect("fails every waiter with the given error", () =>
    Effect.gen(function*() {
      const { watermark } = yield* watermarkAt(0, undefined)
      const fiber = yield* Effect.forkChild(watermark.await(3, never))
      yield* Effect.yieldNow
      watermark.failAll("fenced")
      assert.deepStrictEqual(yield* Fiber.await(fiber), Exit.fail("fenced"))
      assert.strictEqual(watermark.waiting, 0)
    }))

  it("keeps exactly the waiters that neither timed out nor were passed, whatever the order", () =>
    fc.assert(fc.asyncProperty(
      fc.array(fc.record({ seq: fc.integer({ min: 1, max: 50 }), interrupted: fc.boolean() }), { maxLength: 40 }),
      fc.integer({ min: 0, max: 50 }),
      (waits, to) =>
        Effect.runPromise(Effect.gen(function*() {
          const { watermark } = yield* watermarkAt(0, undefined)
          const fibers = []
          for (const wait of waits) fibers.push(yield* Effect.forkChild(watermark.await(wait.seq, never)))
          yield* Effect.yieldNow
          for (let i = 0; i < waits.length; i++) if (waits[i]!.interrupted) yield* Fiber.interrupt(fibers[i]!)
          watermark.advance(to, 0)
          yield* Effect.yieldNow
          const left = waits.filter((wait) => !wait.interrupted && wait.seq > to).length
          assert.strictEqual(watermark.waiting, left)
          for (let i = 0; i < waits.length; i++) {
            const done = fibers[i]!.pollUnsafe()
            if (!waits[i]!.interrupted && waits[i]!.seq <= to) assert.isTrue(done !== undefined && Exit.isSuccess(done))
          }
          for (const fiber of fibers) yield* Fiber.interrupt(fiber)
        }))
    )))
})
