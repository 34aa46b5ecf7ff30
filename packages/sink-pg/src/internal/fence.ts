/**
 * What one sink remembers of the claim fence (private to `Statements`): the last value of the `sector_claims`
 * sequence it saw in a durable commit (`claims`) and, per sector it writes, the epoch it writes under, the highest
 * `toSeq` it saw applied, and the sequence value at which it last saw the sector's row at that epoch with its own
 * eyes (a locking `UPDATE … WHERE epoch = $epoch` that applied, `checkedAt`).
 *
 * **Why it is safe to skip the sector row.** A claim bumps the epoch and draws a number from `sector_claims` in one
 * statement (the number after the row is locked), then waits for the advisory lock `fenceKey` exclusive; every group
 * commit holds that lock shared from the moment it reads the sequence until it ends. So when a commit reads the
 * sequence at the value at which it last checked a sector (`vouches`), no claim of that sector has got past its wait
 * since; a claim that has not yet waits for this commit to end before it reads the sector's rows, so it reads what
 * this commit wrote. Any other claim has moved the sequence, and the commit checks the sector's row again.
 *
 * **Why a skipped sector row loses no watermark.** A sector row is skipped only for a batch whose `toSeq` is the seq
 * of a row it writes (`carries`), so the sector's highest row seq or its written watermark is always its last
 * committed `toSeq`: `load` takes the greater of the two.
 *
 * **Gotchas.** A sequence value is trusted only once it has been seen in a commit that wrote (a commit that assigns a
 * transaction id is flushed with the WAL before it, sequence records included), so a crash cannot hand the same
 * value out again to a later claim. The memory is bounded (`capacity` sectors, least recently written first out);
 * a sector forgotten goes back to the sector-row path.
 */
import type { Batch } from "@sectors/core"

interface Remembered {
  readonly epoch: number
  /** The highest toSeq seen applied at this epoch. */
  readonly toSeq: number
  /** The `sector_claims` value of the last commit that checked the sector row at this epoch, if any. */
  readonly checkedAt: number | undefined
}

/** Whether the batch writes a row (an upsert, or an authority with a worker) at its `toSeq`. */
export const carries = (batch: Batch.Batch): boolean => {
  for (const entry of batch.entries) {
    if (entry.seq !== batch.toSeq) continue
    if (entry._tag === "Upsert" || (entry._tag === "Authority" && entry.worker !== null)) return true
  }
  return false
}

/** The fence memory of one sink. */
export class Fence {
  /** The highest `sector_claims` value seen in a commit that wrote; -1 before the first. */
  private known = -1
  private readonly sectors = new Map<number, Remembered>()

  /** Sectors remembered at most. */
  readonly capacity: number

  constructor(capacity: number) {
    this.capacity = capacity
  }

  /** The `sector_claims` value the commits of vouched sectors are checked against. */
  get claims(): number {
    return this.known
  }

  /** A batch at or below what this sink saw applied at its epoch: already durable, nothing to write. */
  isReplay(batch: Batch.Batch): boolean {
    const remembered = this.sectors.get(batch.sectorId)
    return remembered !== undefined && remembered.epoch === batch.epoch && batch.toSeq <= remembered.toSeq
  }

  /** Whether the batch may skip its sector row, provided the sequence still reads `claims`. */
  vouches(batch: Batch.Batch): boolean {
    const remembered = this.sectors.get(batch.sectorId)
    return remembered !== undefined && remembered.epoch === batch.epoch && remembered.checkedAt === this.known &&
      carries(batch)
  }

  /**
   * Records a batch applied by a commit that read `claims` from the sequence; `checked`: its sector row was updated
   * (so the row showed the batch's epoch, locked, at that value).
   */
  applied(batch: Batch.Batch, claims: number, checked: boolean): void {
    const remembered = this.sectors.get(batch.sectorId)
    const same = remembered !== undefined && remembered.epoch === batch.epoch
    this.sectors.delete(batch.sectorId)
    this.sectors.set(batch.sectorId, {
      epoch: batch.epoch,
      toSeq: same ? Math.max(remembered.toSeq, batch.toSeq) : batch.toSeq,
      checkedAt: checked ? claims : same ? remembered.checkedAt : undefined
    })
    if (checked && claims > this.known) this.known = claims
    if (this.sectors.size > this.capacity) this.sectors.delete(this.sectors.keys().next().value!)
  }

  /** Forgets a sector: it was fenced, or this sink claimed it again. */
  forget(sectorId: number): void {
    this.sectors.delete(sectorId)
  }
}
