/**
 * Waiting in tests that serve real I/O on the TestClock: `eventually` for I/O to happen (real time, the TestClock
 * standing still), `advanceUntil` for timing behaviour (the TestClock moved on a step at a time, real I/O in between).
 */
import { assert } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { TestClock } from "effect/testing"

/** Waits (in real time, the TestClock standing still) until `condition` holds: for I/O to happen, not for time. */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 2500; attempt++) {
      if (yield* condition) return
      yield* TestClock.withLive(Effect.sleep(Duration.millis(2)))
    }
    assert.fail("the condition never held")
  })

/** Moves the TestClock on by `step` at a time, letting real I/O happen in between, until `condition` holds. */
export const advanceUntil = <E, R>(condition: Effect.Effect<boolean, E, R>, step: Duration.Input) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 2000; attempt++) {
      if (yield* condition) return
      yield* TestClock.adjust(step)
      yield* TestClock.withLive(Effect.sleep(Duration.millis(1)))
    }
    assert.fail("the condition never held")
  })
