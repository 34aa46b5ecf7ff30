/**
 * `StatusFeed`: the status page's stream costs nothing while nobody watches — no sampling fiber, no timer, no sample
 * — and sampling runs exactly while at least one subscriber is connected; subscribers are bounded. Time is the
 * `TestClock`'s only.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as StatusFeed from "../src/StatusFeed.ts"

/** A feed whose samples are 1, 2, 3… counted from each start, and how often a sampler was made and run. */
const counting = (maxSubscribers = 2) =>
  Effect.gen(function*() {
    const calls = { made: 0, taken: 0 }
    const feed = yield* StatusFeed.make({
      sampler: Effect.sync(() => {
        calls.made += 1
        let n = 0
        return Effect.sync(() => {
          calls.taken += 1
          return (n += 1)
        })
      }),
      interval: "1 second",
      maxSubscribers,
      history: 3,
      buffer: 4
    })
    return { feed, calls }
  })

/** Subscribes in a scope of its own, collecting what arrives; closing the scope ends the subscription. */
const subscriber = (feed: StatusFeed.StatusFeed<number>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const received: Array<number> = []
    const fiber = yield* Stream.runForEach(feed.subscribe, (n) => Effect.sync(() => received.push(n))).pipe(
      Effect.forkIn(scope)
    )
    yield* Effect.yieldNow
    return { received, fiber, leave: Scope.close(scope, Exit.void) }
  })

describe("StatusFeed", () => {
  it.effect("arms no timer and samples nothing while nobody subscribes", () =>
    Effect.gen(function*() {
      const { calls, feed } = yield* counting()
      yield* TestClock.adjust("1 hour")
      assert.isFalse(feed.sampling())
      assert.deepStrictEqual(calls, { made: 0, taken: 0 })
    }))

  it.effect("samples every interval while one subscriber is connected, and stops when it leaves", () =>
    Effect.gen(function*() {
      const { calls, feed } = yield* counting()
      const one = yield* subscriber(feed)
      assert.isTrue(feed.sampling())
      assert.strictEqual(feed.subscribers(), 1)
      yield* TestClock.adjust("3 seconds")
      assert.deepStrictEqual(one.received, [1, 2, 3])

      yield* one.leave
      assert.isFalse(feed.sampling())
      assert.strictEqual(feed.subscribers(), 0)
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(calls, { made: 1, taken: 3 })
    }))

  it.effect("starts on the first subscriber and stops on the last, whatever order they leave in", () =>
    Effect.gen(function*() {
      const { calls, feed } = yield* counting()
      const first = yield* subscriber(feed)
      yield* TestClock.adjust("2 seconds")
      const second = yield* subscriber(feed)
      // the newcomer gets the history first, then the live samples
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(second.received, [1, 2, 3])
      yield* first.leave
      assert.isTrue(feed.sampling())
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(second.received, [1, 2, 3, 4])
      yield* second.leave
      assert.isFalse(feed.sampling())
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(calls, { made: 1, taken: 4 })
    }))

  it.effect("starts over with a fresh sampler and an empty history after a gap", () =>
    Effect.gen(function*() {
      const { calls, feed } = yield* counting()
      const first = yield* subscriber(feed)
      yield* TestClock.adjust("2 seconds")
      yield* first.leave
      yield* TestClock.adjust("1 minute")
      const again = yield* subscriber(feed)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(again.received, [1])
      assert.strictEqual(calls.made, 2)
      yield* again.leave
    }))

  it.effect("refuses a subscriber past maxSubscribers, and takes one again once a place is free", () =>
    Effect.gen(function*() {
      const { feed } = yield* counting(1)
      const one = yield* subscriber(feed)
      const refused = yield* Stream.runCollect(feed.subscribe).pipe(Effect.flip)
      assert.strictEqual(refused._tag, "TooManySubscribers")
      assert.strictEqual(feed.subscribers(), 1)
      yield* one.leave
      const next = yield* subscriber(feed)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(next.received, [1])
      yield* next.leave
    }))

  it.effect("keeps at most `history` samples for a newcomer", () =>
    Effect.gen(function*() {
      const { feed } = yield* counting()
      const first = yield* subscriber(feed)
      yield* TestClock.adjust("5 seconds")
      const late = yield* Stream.runCollect(Stream.take(feed.subscribe, 3))
      assert.deepStrictEqual([...late], [3, 4, 5])
      yield* first.leave
      yield* Fiber.interrupt(first.fiber)
    }))
})
