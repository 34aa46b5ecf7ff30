/**
 * The claim fence's locks and what one sink remembers of it (private to `Statements`). A sector belongs to one of
 * `slots` slots (`slotOf`), and each 8 neighbouring slots to a range; each slot and each range is an advisory lock
 * (`Migrations.fenceLockClass`, key: `slotKey`, `rangeKey`). A group commit holds shared, until it ends, the slots
 * of its sectors — or, when they are more than `maxLocks`, their ranges (`locksOf`) — and, once it holds them, reads
 * the last value of the sequence `sector_claims`; a claim holds its sector's range and slot exclusive for its whole
 * (one-statement) transaction — the epoch bump, then a number drawn from `sector_claims`. The sink remembers the last value it saw in a commit that checked a
 * sector row (`claims`) and, per sector it writes, the epoch it writes under, the highest `toSeq` it saw applied,
 * and the sequence value at which it last saw the sector's row at that epoch with its own eyes (a locking `UPDATE …
 * WHERE epoch = $epoch` that applied: `checkedAt`).
 *
 * **Why it is safe to skip the sector row.** Every commit of a sector holds its slot or its range, a claim of
 * it both, so claims and commits of a sector exclude each other: each commit runs wholly before or wholly after each
 * claim. A commit that checked sector S's row at epoch e
 * read the sequence at K while it held S's slot; a claim of S that ends before it was seen by its row check (the
 * `UPDATE` would not have applied), and one that starts after it draws its number after it, so above K (the sequence
 * only goes up). So when a later commit, holding S's slot, reads the sequence still at K (`vouches`), no claim of S
 * has begun since that check, and none can until this commit ends: S is still at epoch e, and the claim that comes
 * next reads S's rows after this commit wrote them. Once any claim moved the sequence, the commit checks S's row
 * again (fenced if S moved on). A claim waits only for the commits in flight that hold its own slot or range,
 * not for every commit on the database: a group of few sectors blocks the claims of its slots only; a group of many
 * blocks those of its ranges.
 *
 * **Why a skipped sector row loses no watermark.** A sector row is skipped only for a batch whose `toSeq` is the seq
 * of a row it writes (`carries`), so the sector's highest row seq or its written watermark is always its last
 * committed `toSeq`: `load` and `read` take the greater of the two.
 *
 * **Gotchas.** The claim draws its number while it holds its locks: drawn before (and the locks taken after), a
 * commit in flight on the slot could read that number, check the row at the old epoch and vouch at that number for a
 * sector about to change hands. A commit takes its locks in ascending order and all of them before any row lock; a
 * claim takes its range before its slot and, holding both, only the row of its sector, which no commit can hold
 * then: so no wait forms a cycle (a commit never waits for a commit through the fence's locks). A commit takes at
 * most `maxLocks` (8) advisory locks, whatever the size of its group (`max_locks_per_transaction`). A sequence value
 * is trusted only once it has been seen in a commit that wrote (a commit that assigns a transaction id is flushed
 * with the WAL before it, the sequence's record included), so a crash cannot hand the same value out again to a
 * later claim; with `synchronous_commit = off`, or after a failover to an asynchronous replica, that holds no more
 * (nor does the sink's idea of what is durable). The memory is bounded (`capacity` sectors, least recently written
 * first out); a sector forgotten goes back to the sector-row path.
 */
import type { Batch } from "@sectors/core"

/** How many slots the sectors are spread over. */
export const slots = 64

/** Slots per range: a range is the coarse lock of 8 neighbouring slots. */
export const slotsPerRange = 8

/** The most locks a group commit takes: as many slots, or else its ranges (of which there are 8). */
export const maxLocks = slots / slotsPerRange

/** The slot of a sector. */
export const slotOf = (sectorId: number): number => ((sectorId % slots) + slots) % slots

/** The lock key (`objid`) of a slot: the slot itself, 0–63. */
export const slotKey = (slot: number): number => slot

/** The lock key (`objid`) of the range holding a slot: 64–71. */
export const rangeKey = (slot: number): number => slots + Math.floor(slot / slotsPerRange)

/**
 * The lock keys a group commit takes shared, each once, ascending (the order they are locked in): its sectors'
 * slots if there are at most `maxLocks` of them, else their ranges. A claim takes both its range and its slot
 * exclusive, so it conflicts with every commit of its sector either way.
 */
export const locksOf = (batches: ReadonlyArray<Batch.Batch>): Array<number> => {
  const fine = new Set(batches.map((b) => slotOf(b.sectorId)))
  const keys = fine.size <= maxLocks ? [...fine].map(slotKey) : [...new Set([...fine].map(rangeKey))]
  return keys.sort((a, b) => a - b)
}

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
