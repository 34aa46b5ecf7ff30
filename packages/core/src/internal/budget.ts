/**
 * The host-wide buffer budget: how many bytes of accepted-but-not-yet-durable data all sectors together may hold
 * (`maxBufferedBytes`). It is what governs admission while the database is away — not the circuit: a submission is
 * taken as long as what it could add fits, and refused at once (`BufferFull`) when it does not.
 *
 * A submission reserves the most its ops can add (`Batch.opBytes` each; collapsing only makes it less) before it
 * enters a mailbox; when the sector folds it in, the reservation is given back and the backlog's real growth counted
 * instead; when a batch commits, its bytes are given back. So `used` is, at every moment, what the backlogs hold plus
 * what is on its way into them, and never more than `max`.
 */
import type * as Context from "effect/Context"
import * as Metrics from "../Metrics.ts"

/** One host's budget. */
export class Budget {
  /** Bytes held or reserved now. */
  used = 0
  /** Most bytes that may be held. */
  readonly max: number
  /** A submission was refused and room has not come back since (below 90 %). */
  private refusing = false
  /** The `bufferedBytes` gauge's series. */
  private readonly held: Metrics.Tally

  constructor(max: number, context: Context.Context<never>) {
    this.max = max
    this.held = Metrics.tally(Metrics.bufferedBytes, context)
    Metrics.bufferBudgetBytes.updateUnsafe(max, context)
  }

  /**
   * Whether the budget is spent: 95 % or more of it held, or a submission was refused for want of room and less
   * than 10 % has been freed since. Readiness turns 503 then.
   */
  get full(): boolean {
    return this.refusing || this.used >= this.max * 0.95
  }

  /** Whether `bytes` more would fit now (nothing reserved: for what is counted at once, `add`). */
  fits(bytes: number): boolean {
    return this.used + bytes <= this.max
  }

  /** Reserves `bytes` if they fit; false (nothing reserved) if they do not. */
  tryReserve(bytes: number): boolean {
    if (this.used + bytes > this.max) {
      this.refusing = true
      return false
    }
    this.add(bytes)
    return true
  }

  /** Counts `delta` bytes more (or fewer, when negative). */
  add(delta: number): void {
    if (delta === 0) return
    this.used += delta
    if (this.refusing && this.used < this.max * 0.9) this.refusing = false
    this.held.value += delta
  }
}
