/**
 * Waits that end at a deadline unless they end first — a durable submission's `durableTimeout` — on one timer for a
 * whole host. Racing each wait against a sleep of its own (`Effect.timeout`) forks two fibers a wait; here a wait is
 * an entry in a queue ordered by deadline, and one sleeping fiber wakes at the earliest deadline, expires every entry
 * due by then and sleeps again until the next, or ends when none is left.
 *
 * Waits that end first (the usual case: their ops became durable) are `cancel`led: marked, and dropped from the
 * queue's front as soon as they reach it; when marked entries behind a live one (a wait still under way) come to be
 * most of the queue, it is compacted, so the queue holds about as many entries as there are waits. With one
 * `durableTimeout` the deadlines come in the order the waits begin, so adding is a push and the front is where the
 * waits that end first are; a deadline earlier than the last one is put in its place, and the timer is brought
 * forward if it is the earliest.
 *
 * Not thread-safe by design: used only from fibers of one host, which never run in parallel.
 */
import type * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** One wait's deadline: `expire` runs at `at` unless it was cancelled. */
export interface Expiry {
  readonly at: number
  readonly expire: () => void
  done: boolean
}

export class Expiries {
  private readonly clock: Clock.Clock
  /** The entries from `head` on, by deadline; those before `head` are gone. */
  private entries: Array<Expiry> = []
  private head = 0
  /** Cancelled entries still in the queue (behind a live one). */
  private cancelled = 0
  /** The deadline the timer sleeps until; `undefined`: no timer. */
  private wakeAt: number | undefined = undefined
  /** Which timer is the live one: a timer brought forward leaves the one it replaces to end when it wakes. */
  private generation = 0

  /** The services the timer fiber runs with (the host's). */
  private readonly context: Context.Context<never>

  constructor(clock: Clock.Clock, context: Context.Context<never>) {
    this.clock = clock
    this.context = context
  }

  /** Entries not yet expired nor dropped (cancelled ones included until they reach the front). */
  get size(): number {
    return this.entries.length - this.head
  }

  /** Whether a timer is armed. */
  get armed(): boolean {
    return this.wakeAt !== undefined
  }

  /**
   * Runs `expire` once the clock reads `at` (ms since the epoch) or later, unless `cancel` comes first. Arms the timer
   * (a fiber of its own, with the host's services) if none is armed for `at` or earlier. Synchronous: the caller holds
   * the entry before anything else runs, so nothing can end its wait without being able to cancel it.
   */
  add(at: number, expire: () => void): Expiry {
    const expiry: Expiry = { at, expire, done: false }
    const entries = this.entries
    let index = entries.length
    while (index > this.head && entries[index - 1]!.at > at) index--
    if (index === entries.length) entries.push(expiry)
    else entries.splice(index, 0, expiry)
    if (this.wakeAt === undefined || at < this.wakeAt) {
      this.wakeAt = at
      Effect.runForkWith(this.context)(this.timer(++this.generation))
    }
    return expiry
  }

  /** The wait ended first: its `expire` never runs. */
  cancel(expiry: Expiry): void {
    if (expiry.done) return
    expiry.done = true
    this.cancelled++
    this.dropDone()
    if (this.cancelled >= 1024 && this.cancelled * 2 >= this.size) {
      this.entries = this.entries.slice(this.head).filter((entry) => !entry.done)
      this.head = 0
      this.cancelled = 0
    }
  }

  /** Drops the cancelled entries at the front, and the space of those gone when it is most of the array. */
  private dropDone(): void {
    const entries = this.entries
    while (this.head < entries.length && entries[this.head]!.done) {
      this.head++
      this.cancelled--
    }
    if (this.head === entries.length) {
      this.entries = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= entries.length) {
      this.entries = entries.slice(this.head)
      this.head = 0
    }
  }

  /** Sleeps until the earliest deadline, expires every entry due, and again until none is left. */
  private timer(generation: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (generation !== this.generation) return Effect.void
      const now = this.clock.currentTimeMillisUnsafe()
      this.dropDone()
      while (this.head < this.entries.length && this.entries[this.head]!.at <= now) {
        const expiry = this.entries[this.head++]!
        if (expiry.done) {
          this.cancelled-- // cancelled while the ones before it expired
          continue
        }
        expiry.done = true
        expiry.expire()
      }
      this.dropDone()
      const next = this.entries[this.head]
      if (next === undefined) {
        this.wakeAt = undefined
        return Effect.void
      }
      this.wakeAt = next.at
      return Effect.andThen(this.clock.sleep(Duration.millis(next.at - now)), this.timer(generation))
    })
  }
}
