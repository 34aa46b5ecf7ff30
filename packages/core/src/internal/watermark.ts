/**
 * A sector's durable watermark and the callers waiting for it.
 *
 * Every op up to `seq` is durable; `advance` moves the watermark and resolves, in seq order, every waiter it
 * passes. Waiters are kept sorted by the seq they wait for, so an advance touches only the waiters it resolves. A
 * waiter that stops waiting (a timeout, an interruption) is removed at once, not when the watermark finally passes
 * it: a client that retries a timed-out durable request a thousand times leaves no thousand waiters behind. A
 * waiter is a fiber (`await`) or a callback (`watch`, for a transport that answers without a fiber per wait).
 *
 * Not thread-safe by design: a sector changes it only from its own fibers, without yielding in between.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { Expiries, Expiry } from "./expiries.ts"

interface Waiter<E> {
  readonly seq: number
  /** Hears how the wait ended, once. */
  readonly done: (exit: Exit.Exit<void, E>) => void
  /** Its deadline, if it has one: cancelled when the watermark passes it first. */
  expiry?: Expiry | undefined
}

/** A wait's deadline: the wait fails with `timedOut()` once the clock reads `at`. */
export interface Deadline<E> {
  readonly at: number
  readonly timedOut: () => E
}

/** A watermark with waiters that fail with `E` when the sector stops before reaching them. */
export class Watermark<E> {
  /** Every op up to this seq is durable. */
  seq: number
  /** When the watermark last moved (ms since the epoch); undefined until it has. */
  at: number | undefined
  /** Sorted by seq. `any`: a wait fails with `E` or with its own deadline's error, and its `done` takes either. */
  private readonly waiters: Array<Waiter<any>> = []
  /** Where the waits with a deadline wait for it (the host's one timer for them). */
  private readonly expiries: Expiries

  constructor(seq: number, at: number | undefined, expiries: Expiries) {
    this.seq = seq
    this.at = at
    this.expiries = expiries
  }

  /** Callers currently waiting. */
  get waiting(): number {
    return this.waiters.length
  }

  /** Moves the watermark up to `seq` (never down) and resolves every waiter it passes. */
  advance(seq: number, at: number | undefined): void {
    if (seq <= this.seq) return
    this.seq = seq
    this.at = at
    let resolved = 0
    while (resolved < this.waiters.length && this.waiters[resolved]!.seq <= seq) resolved++
    if (resolved === 0) return
    // out of the list before any of them hears it: a `done` may wait anew, or cancel another wait
    for (const waiter of this.waiters.splice(0, resolved)) {
      if (waiter.expiry !== undefined) this.expiries.cancel(waiter.expiry)
      waiter.done(Exit.void)
    }
  }

  /**
   * Waits until `seq` is durable. `refuse` is asked first: an error it returns fails the wait at once (the sector
   * has stopped and will never get there). With a `deadline`, the wait fails with `deadline.timedOut()` once the clock
   * reads `deadline.at` if `seq` is not durable by then — on the host's one timer for such deadlines (`expiries`), not
   * a sleep and a race of its own.
   *
   * **Gotchas** a wait that ends without `seq` (interrupted, timed out) removes its waiter at once.
   */
  await<E2 = never>(seq: number, refuse: () => E | undefined, deadline?: Deadline<E2>): Effect.Effect<void, E | E2> {
    return Effect.suspend(() => {
      if (seq <= this.seq) return Effect.void
      const refused = refuse()
      if (refused !== undefined) return Effect.fail(refused)
      const deferred = Deferred.makeUnsafe<void, E | E2>()
      const cancel = this.watch(seq, (exit) => Deferred.doneUnsafe(deferred, exit), deadline)
      return Deferred.await(deferred).pipe(Effect.onInterrupt(() => Effect.sync(cancel)))
    })
  }

  /**
   * The same wait without a fiber: `done` hears once how it ended — `seq` durable, the sector stopped (`failAll`), or
   * `deadline` passed — unless the returned `cancel` comes first. For a seq above the watermark, of a sector that
   * takes work (`await` checks both; here the caller does). `done` runs where the wait ends (a flusher's commit, the
   * deadlines' timer): it must not throw.
   */
  watch<E2 = never>(seq: number, done: (exit: Exit.Exit<void, E | E2>) => void, deadline?: Deadline<E2>): () => void {
    const waiter: Waiter<E | E2> = { seq, done }
    this.waiters.splice(this.after(seq), 0, waiter)
    if (deadline !== undefined) {
      waiter.expiry = this.expiries.add(deadline.at, () => {
        this.remove(waiter)
        done(Exit.fail(deadline.timedOut()))
      })
    }
    return () => {
      this.remove(waiter)
      if (waiter.expiry !== undefined) this.expiries.cancel(waiter.expiry)
    }
  }

  /** Fails every waiter with `error` (the sector stopped or was fenced). */
  failAll(error: E): void {
    for (const waiter of this.waiters.splice(0)) {
      if (waiter.expiry !== undefined) this.expiries.cancel(waiter.expiry)
      waiter.done(Exit.fail(error))
    }
  }

  /** The index after the last waiter for a seq at or below `seq` (binary search: waiters are sorted by seq). */
  private after(seq: number): number {
    let low = 0
    let high = this.waiters.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (this.waiters[middle]!.seq <= seq) low = middle + 1
      else high = middle
    }
    return low
  }

  private remove(waiter: Waiter<any>): void {
    for (let at = this.after(waiter.seq) - 1; at >= 0 && this.waiters[at]!.seq === waiter.seq; at--) {
      if (this.waiters[at] === waiter) {
        this.waiters.splice(at, 1)
        return
      }
    }
  }
}
