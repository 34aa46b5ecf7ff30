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

/**
 * Replaces the current `TestClock` with a counting one for `effect` (use inside `it.effect`, which provides the
 * `TestClock`); `TestClock.adjust` keeps working.
 */
export const withCountingClock = <A, E, R>(
  f: (clock: CountingClock) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  TestClock.testClockWith((test) => {
    let started = 0
    let fired = 0
    const counting: TestClock.TestClock = {
      currentTimeMillisUnsafe: () => test.currentTimeMillisUnsafe(),
      currentTimeMillis: test.currentTimeMillis,
      currentTimeNanosUnsafe: () => test.currentTimeNanosUnsafe(),
      currentTimeNanos: test.currentTimeNanos,
      monotonicTimeNanosUnsafe: () => test.monotonicTimeNanosUnsafe(),
      monotonicTimeNanos: test.monotonicTimeNanos,
      sleep: (duration: Duration.Duration) => {
        started++
        return Effect.tap(test.sleep(duration), () => Effect.sync(() => void fired++))
      },
      adjust: (duration) => test.adjust(duration),
      setTime: (timestamp) => test.setTime(timestamp),
      withLive: (effect) => test.withLive(effect)
    }
    const clock: CountingClock = {
      counts: () => ({ started, fired }),
      reset: () => {
        started = 0
        fired = 0
      }
    }
    return Effect.provideService(f(clock), Clock.Clock, counting)
  })
