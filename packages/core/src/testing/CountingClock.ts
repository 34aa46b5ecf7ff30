/**
 * A `TestClock` that counts timers: how many sleeps were started and how many fired. Run a scenario, let it go
 * idle, advance time by an hour, and assert that nothing fired: an idle sector costs no wakeups.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Duration from "effect/Duration"
import { TestClock } from "effect/testing"

/** What the clock has seen. */
export interface TimerCounts {
  /** Sleeps started. */
  readonly started: number
  /** Sleeps that ran to the end (timer wakeups). */
  readonly fired: number
}

/** A test clock that counts, and a way to read the counts. */
export interface CountingClock {
  readonly counts: () => TimerCounts
  /** Resets both counts to zero. */
  readonly reset: () => void
}

/** Wraps any clock (the live one in a benchmark) so that its timers are counted. */
export const counting = (clock: Clock.Clock): CountingClock & { readonly clock: Clock.Clock } => {
  let started = 0
  let fired = 0
  return {
    clock: {
      currentTimeMillisUnsafe: () => clock.currentTimeMillisUnsafe(),
      currentTimeMillis: clock.currentTimeMillis,
      currentTimeNanosUnsafe: () => clock.currentTimeNanosUnsafe(),
      currentTimeNanos: clock.currentTimeNanos,
      monotonicTimeNanosUnsafe: () => clock.monotonicTimeNanosUnsafe(),
      monotonicTimeNanos: clock.monotonicTimeNanos,
      sleep: (duration: Duration.Duration) => {
        started++
        return Effect.tap(clock.sleep(duration), () => Effect.sync(() => void fired++))
      }
    },
    counts: () => ({ started, fired }),
    reset: () => {
      started = 0
      fired = 0
    }
  }
}

/**
 * Replaces the current `TestClock` with a counting one for `effect` (use inside `it.effect`, which provides the
 * `TestClock`); `TestClock.adjust` keeps working.
 */
export const withCountingClock = <A, E, R>(
  f: (clock: CountingClock) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  TestClock.testClockWith((test) => {
    const wrapped = counting(test)
    const clock: TestClock.TestClock = {
      ...wrapped.clock,
      adjust: (duration) => test.adjust(duration),
      setTime: (timestamp) => test.setTime(timestamp),
      withLive: (effect) => test.withLive(effect)
    }
    return Effect.provideService(f(wrapped), Clock.Clock, clock)
  })
