/**
 * A sector's backlog: the accepted ops that are not durable yet, collapsed into `Batch.Pending` segments of at most
 * `maxBatch` ops each (oldest first), plus the one segment in flight.
 *
 * The intake `accept`s submissions into the newest segment (opening a new one at `maxBatch`); the flusher `take`s
 * the oldest as its next batch and, depending on the outcome, `commit`s it or `requeue`s it under the newer ops
 * (merged with the next segment when both fit in one batch — a failed batch and what arrived meanwhile go out
 * together). A backlog holding `maxPendingKeys` distinct keys is `full`: a new submission waits (`awaitSpace`, a
 * bounded wait) until a `take` makes room, or is refused; what is already in the mailbox is still taken, so the
 * bound is `maxPendingKeys` plus one submission, plus one mailbox while the sector reloads.
 *
 * It counts ops, keys and bytes (`Batch.cellBytes`, in flight included) as it goes and reports every change of the
 * key count to `onKeys` (the pending-keys gauge) and of the byte count to `onBytes` (the host's buffer budget).
 * Not thread-safe by design: a sector changes it only from its own fibers, without yielding in between.
 */
import type * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import { type Entry, Pending } from "../Batch.ts"
import type * as Op from "../Op.ts"

const ignore = (_delta: number) => {}

/** The backlog of one sector. */
export class Backlog {
  /** The seq the next accepted op gets (seqs are per sector and gap-free). */
  nextSeq: number
  /** Ops waiting in segments (not counting the one in flight). */
  ops = 0
  /** Distinct keys waiting in segments (not counting the one in flight). */
  keys = 0
  /** What every held segment costs, in flight included (`Batch.Pending.bytes`). */
  bytes = 0
  /** The segment being persisted, if any. */
  inFlight: Pending | undefined = undefined
  private readonly segments: Array<Pending> = []
  /** Opened by a `take`; made on the first wait for room (an idle sector holds none). */
  private space: Latch.Latch | undefined = undefined
  private readonly maxBatch: number
  private readonly maxPendingKeys: number
  private onKeys: (delta: number) => void
  private onBytes: (delta: number) => void

  constructor(options: {
    readonly nextSeq: number
    readonly maxBatch: number
    readonly maxPendingKeys: number
    readonly onKeys?: ((delta: number) => void) | undefined
    readonly onBytes?: ((delta: number) => void) | undefined
  }) {
    this.nextSeq = options.nextSeq
    this.maxBatch = options.maxBatch
    this.maxPendingKeys = options.maxPendingKeys
    this.onKeys = options.onKeys ?? ignore
    this.onBytes = options.onBytes ?? ignore
  }

  /** The oldest waiting segment: the next batch. */
  get first(): Pending | undefined {
    return this.segments[0]
  }

  /** Whether the backlog holds `maxPendingKeys` keys or more (new submissions are refused). */
  get full(): boolean {
    return this.keys >= this.maxPendingKeys
  }

  /** Accepted ops not yet durable, in flight included. */
  get unflushed(): number {
    return this.ops + (this.inFlight?.ops ?? 0)
  }

  /** The waiting segments, oldest first. */
  waiting(): ReadonlyArray<Pending> {
    return this.segments
  }

  /**
   * Folds a submission in, giving its ops the next seqs, and calling `each` with `target` for every op first (the
   * caller applies it to its state there; if `each` throws, the ops before it stay folded with their seqs; a function
   * and its target rather than a closure, so that a submission makes none). `cells` are the ops' `Batch.cellBytes`
   * when the caller measured them already. Returns the first seq.
   */
  accept<T>(
    ops: ReadonlyArray<Op.Op>,
    at: number,
    each: (target: T, op: Op.Op, seq: number) => void,
    target: T,
    cells?: ReadonlyArray<number>
  ): number {
    const firstSeq = this.nextSeq
    let segment = this.segments[this.segments.length - 1]
    const keysBefore = this.keys
    const bytesBefore = this.bytes
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!
        if (segment === undefined || segment.ops >= this.maxBatch) {
          segment = new Pending()
          this.segments.push(segment)
        }
        each(target, op, this.nextSeq)
        const keys = segment.keys
        const bytes = segment.bytes
        segment.add(op, this.nextSeq, at, cells?.[i])
        this.keys += segment.keys - keys
        this.bytes += segment.bytes - bytes
        this.ops++
        this.nextSeq++
      }
    } finally {
      this.reportKeys(this.keys - keysBefore)
      this.reportBytes(this.bytes - bytesBefore)
    }
    return firstSeq
  }

  /** Waits until a `take` (or `detach`) makes room; at once if the backlog is not full. Bound it with a timeout. */
  awaitSpace(): Effect.Effect<void> {
    this.space ??= Latch.makeUnsafe(true)
    if (this.full) this.space.closeUnsafe()
    return this.space.await
  }

  /** Takes the oldest segment as the one in flight. The backlog must not be empty. */
  take(): Pending {
    const segment = this.segments.shift()!
    this.ops -= segment.ops
    this.keys -= segment.keys
    this.reportKeys(-segment.keys)
    this.inFlight = segment
    this.space?.openUnsafe()
    return segment
  }

  /** The segment in flight is durable. */
  commit(): void {
    const done = this.inFlight
    if (done === undefined) return
    this.inFlight = undefined
    this.bytes -= done.bytes
    this.reportBytes(-done.bytes)
  }

  /** Drops a dead-lettered entry from the segment in flight, so that it never goes out again. */
  discard(entry: Entry): void {
    const segment = this.inFlight
    if (segment === undefined) return
    const bytes = segment.bytes
    segment.discard(entry)
    this.bytes += segment.bytes - bytes
    this.reportBytes(segment.bytes - bytes)
  }

  /** Puts the segment in flight back under the newer ops (merged with the next one when `merge` and both fit). */
  requeue(merge: boolean): void {
    const failed = this.inFlight
    if (failed === undefined) return
    this.inFlight = undefined
    const next = this.segments[0]
    if (merge && next !== undefined && failed.ops + next.ops <= this.maxBatch) {
      const before = next.keys
      const bytes = failed.bytes + next.bytes
      failed.merge(next)
      this.bytes += failed.bytes - bytes
      this.reportBytes(failed.bytes - bytes)
      this.segments[0] = failed
      this.ops += failed.ops - next.ops
      this.keys += failed.keys - before
      this.reportKeys(failed.keys - before)
    } else {
      this.segments.unshift(failed)
      this.ops += failed.ops
      this.keys += failed.keys
      this.reportKeys(failed.keys)
    }
  }

  /** Drops the waiting segments that are durable already (up to `seq`), after a reload found them committed. */
  dropThrough(seq: number): void {
    while (this.segments.length > 0 && this.segments[0]!.toSeq <= seq) {
      this.take()
      this.commit()
    }
  }

  /** Drops everything, in flight included, and returns how many ops that was (the sector was fenced). */
  clear(): number {
    const lost = this.unflushed
    this.commit()
    while (this.segments.length > 0) {
      this.take()
      this.commit()
    }
    return lost
  }

  /**
   * Stops reporting (the sector stopped): the gauge and the budget give back what is still held, which stays here
   * for the sector's last report.
   */
  detach(): void {
    this.reportKeys(-this.keys)
    this.reportBytes(-this.bytes)
    this.onKeys = ignore
    this.onBytes = ignore
    this.space?.openUnsafe()
  }

  /** Every entry still waiting, oldest segment first (to lay over reloaded state). */
  *entries(): Iterable<ReadonlyArray<Entry>> {
    for (const segment of this.segments) yield segment.entries()
  }

  private reportKeys(delta: number): void {
    if (delta !== 0) this.onKeys(delta)
  }

  private reportBytes(delta: number): void {
    if (delta !== 0) this.onBytes(delta)
  }
}
