/**
 * The flushers' deadlines, one timer each for a whole host. Deadlines sit on one `maxWait` grid
 * (`BatchPolicy.deadline`), so at a grid point every sector with ops pending falls due at once. With a timer per
 * sector they woke in waves — each timer fires in its own turn of the event loop, a millisecond or so apart, and
 * one that fires just before the clock's millisecond turns over sleeps again — and their batches reached the sink
 * in waves too: split into several group transactions, the later ones flushed late. Waiting here, every sector due
 * at one deadline wakes in the same turn, and their batches queue for the sink together.
 *
 * Not thread-safe by design: used only from fibers of one host, which never run in parallel.
 */
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

/** One shared timer per deadline: `until(at)` completes once the clock reads `at`. */
export class Deadlines {
  private readonly timers = new Map<number, Deferred.Deferred<void>>()
  private readonly clock: Clock.Clock

  constructor(clock: Clock.Clock) {
    this.clock = clock
  }

  /** Deadlines with a timer armed (for tests and stats). */
  get armed(): number {
    return this.timers.size
  }

  /**
   * Completes once the clock reads `at` (ms since the epoch) or later; every caller waiting for the same `at` shares
   * one timer.
   *
   * **Gotchas** The timer runs in a fiber of its own, detached: a waiter that stops waiting (woken by a trigger)
   * leaves it to fire for the others, and it ends by itself at `at`, so a deadline costs one timer whoever waits.
   */
  until(at: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.clock.currentTimeMillisUnsafe() >= at) return Effect.void
      const armed = this.timers.get(at)
      if (armed !== undefined) return Deferred.await(armed)
      const reached = Deferred.makeUnsafe<void>()
      this.timers.set(at, reached)
      return Effect.andThen(Effect.forkDetach(this.timer(at, reached)), Deferred.await(reached))
    })
  }

  /** Sleeps until the clock reads `at` (a timer may fire just before its millisecond turns over), then wakes all. */
  private timer(at: number, reached: Deferred.Deferred<void>): Effect.Effect<void> {
    return Effect.suspend(() => {
      const left = at - this.clock.currentTimeMillisUnsafe()
      if (left > 0) return Effect.andThen(this.clock.sleep(Duration.millis(left)), this.timer(at, reached))
      this.timers.delete(at)
      Deferred.doneUnsafe(reached, Exit.void)
      return Effect.void
    })
  }
}
