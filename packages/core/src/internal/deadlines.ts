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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"

/** One shared timer per deadline: `wake(at, latch)` opens the latch once the clock reads `at`. */
export class Deadlines {
  private readonly timers = new Map<number, Set<Latch.Latch>>()
  private readonly clock: Clock.Clock

  constructor(clock: Clock.Clock) {
    this.clock = clock
  }

  /** Deadlines with a timer armed (for tests and stats). */
  get armed(): number {
    return this.timers.size
  }

  /**
   * Opens `latch` once the clock reads `at` (ms since the epoch) or later — at once if it does already; every latch
   * registered for the same `at` shares one timer. A flusher waits for its batch's deadline on the latch that also
   * wakes it for a trigger: one wait, no race of two.
   *
   * **Gotchas** The timer runs in a fiber of its own, detached, and ends by itself at `at`, so a deadline costs one
   * timer whoever waits. A latch stays registered until then even if its owner was woken sooner: it is opened once
   * more, for nothing (its owner looks again and finds nothing due).
   */
  wake(at: number, latch: Latch.Latch): Effect.Effect<void> {
    if (this.clock.currentTimeMillisUnsafe() >= at) {
      latch.openUnsafe()
      return Effect.void
    }
    const armed = this.timers.get(at)
    if (armed !== undefined) {
      armed.add(latch)
      return Effect.void
    }
    const latches = new Set([latch])
    this.timers.set(at, latches)
    return Effect.asVoid(Effect.forkDetach(this.timer(at, latches)))
  }

  /** Sleeps until the clock reads `at` (a timer may fire just before its millisecond turns over), then wakes all. */
  private timer(at: number, latches: Set<Latch.Latch>): Effect.Effect<void> {
    return Effect.suspend(() => {
      const left = at - this.clock.currentTimeMillisUnsafe()
      if (left > 0) return Effect.andThen(this.clock.sleep(Duration.millis(left)), this.timer(at, latches))
      this.timers.delete(at)
      for (const latch of latches) latch.openUnsafe()
      return Effect.void
    })
  }
}
