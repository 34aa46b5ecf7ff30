/**
 * Collapsing: accepted ops fold into a `Pending` buffer keyed by (entity, component), with one tombstone per
 * deleted entity, and leave it as a `Batch` of entries for one transaction.
 *
 * Rules (the reference model is `SectorState.fold`): last write wins per (entity, component); a `delete`
 * supersedes every earlier op on its entity (it drops them and leaves a tombstone); a later `set` after a `remove`
 * or `delete` wins; authority is kept per (entity, component) beside the data. Every entry carries the seq of the
 * op that produced it, and sinks guard every write by it (a row is only changed by a higher seq), so the entries of
 * a batch can be applied in any order, split, or applied again without changing the result. Collapsing is also
 * required for correctness: one upsert statement may not touch a key twice (SQLSTATE 21000).
 *
 * A `Pending` covers a contiguous seq range; `merge` joins an older buffer with a newer one exactly as if their
 * ops had been folded in order (used to put a failed batch back under the ops that arrived meanwhile).
 */
import { absurd } from "effect/Function"
import type { Trigger } from "./BatchPolicy.ts"
import type * as Op from "./Op.ts"

/** One write of a batch. */
export type Entry =
  | { readonly _tag: "Upsert"; readonly entity: number; readonly component: string; readonly data: Op.Data; readonly seq: number }
  | { readonly _tag: "Remove"; readonly entity: number; readonly component: string; readonly seq: number }
  | { readonly _tag: "Delete"; readonly entity: number; readonly seq: number }
  | {
    readonly _tag: "Authority"
    readonly entity: number
    readonly component: string
    readonly worker: string | null
    readonly seq: number
  }

/** What one transaction persists for one sector. */
/** A keyed submission (`Sector.SubmitOptions.idempotency`) as a sink stores it with the batch that made it durable. */
export interface IdempotencyRecord {
  readonly key: string
  /** What the caller says identifies the submission's content: the same key with another fingerprint is refused. */
  readonly fingerprint: string
  readonly firstSeq: number
  readonly lastSeq: number
  /** Until when it is remembered (ms since the epoch): its acceptance + its TTL (`idempotencyTtl` unless given). */
  readonly expiresAt: number
}

export interface Batch {
  readonly sectorId: number
  /** The owner's claim: the sink rejects the batch (`Fenced`) if the sector was claimed again since. */
  readonly epoch: number
  /** The first seq this batch covers. */
  readonly fromSeq: number
  /** The last seq it covers: once committed, every op up to it is durable. */
  readonly toSeq: number
  /** Accepted ops folded into it (its size for the batch policy). */
  readonly ops: number
  /** The collapsed writes, at most one per (entity, component) and kind, one tombstone per entity. */
  readonly entries: ReadonlyArray<Entry>
  readonly trigger: Trigger
  /**
   * Keys of submissions whose last op this batch makes durable: the sink stores them in the same transaction, so a
   * retry is recognised after a crash or by a new owner. Absent: none.
   */
  readonly idempotencyKeys?: ReadonlyArray<IdempotencyRecord> | undefined
  /** Stored keys of the sector that expire at or before this (ms since the epoch) may be dropped by the sink. */
  readonly forgetKeysExpiredBy?: number | undefined
}

type ComponentCell =
  | { readonly removed: false; readonly data: Op.Data; readonly seq: number; readonly bytes: number }
  | { readonly removed: true; readonly seq: number; readonly bytes: number }

interface AuthorityCell {
  readonly worker: string | null
  readonly seq: number
  readonly bytes: number
}

interface PendingEntity {
  tombstone: number | undefined
  /** What the entity's cells hold, by `cellBytes`. */
  bytes: number
  readonly components: Map<string, ComponentCell>
  /** Made by the entity's first authority op: most entities never have one, and a `Map` is most of their cost. */
  authority: Map<string, AuthorityCell> | undefined
}

/**
 * The memory a held entity and a tombstone cost beside their cells (an estimate: a pending entity is an object and
 * a `Map` — two with authority entries — about half a KiB in V8 once they hold something).
 */
const entityBytes = 512
const tombstoneBytes = 32

/**
 * The memory one op's cell holds while it is pending, as an estimate of the heap it keeps alive: a fixed cost per
 * cell and its map entry, its strings, and for `set` its data (three times the length of its JSON: parsed objects
 * are bigger than their text). A sector's `bytes` is the sum over the cells it holds (and `entityBytes` per entity),
 * which is what a buffer budget counts. Calibrated against RSS with distinct keys (`test/faults/Outage.test.ts`).
 * `dataLength`: the length of `JSON.stringify(op.data)` when the caller knows it already (a parser that read the op
 * from such text), so that it is not stringified again; it must be exactly that length, which the budget counts with.
 */
export const cellBytes = (op: Op.Op, dataLength?: number): number => {
  switch (op.type) {
    case "set":
      return 96 + 2 * op.component.length + 3 * (dataLength ?? JSON.stringify(op.data).length)
    case "remove":
      return 96 + 2 * op.component.length
    case "delete":
      return tombstoneBytes
    case "authority":
      return 96 + 2 * (op.component.length + (op.worker?.length ?? 0))
    default:
      return absurd(op)
  }
}

/**
 * Each op's `JSON.stringify(data)` length where the caller measured it already (a parser that read the ops from such
 * text), `undefined` for an op it did not (and for ops without data): `cellBytes`'s `dataLength`, op by op.
 */
export type DataLengths = ReadonlyArray<number | undefined>

/** The most that folding `op` in can add to a buffer's `bytes` (its cell, and a new entity's). */
export const opBytes = (op: Op.Op, cell = cellBytes(op)): number => entityBytes + cell

const keysOf = (found: PendingEntity) =>
  found.components.size + (found.authority?.size ?? 0) + (found.tombstone === undefined ? 0 : 1)

/** A delete: drops every older cell of the entity and leaves a tombstone. */
const bury = (found: PendingEntity, seq: number) => {
  found.components.clear()
  found.authority?.clear()
  found.bytes = tombstoneBytes
  found.tombstone = seq
}

/**
 * Keeps a component cell, replacing the older one. After a tombstone here, a component this buffer has no cell for
 * has no row, so removing it is a no-op (a cell it has may already be durable: a failed batch merged back may in
 * fact have committed).
 */
const putComponent = (found: PendingEntity, name: string, cell: ComponentCell) => {
  const old = found.components.get(name)
  if (cell.removed && found.tombstone !== undefined && old === undefined) return
  found.bytes += cell.bytes - (old?.bytes ?? 0)
  found.components.set(name, cell)
}

/** Keeps an authority cell, replacing the older one; clearing after a tombstone is a no-op as in `putComponent`. */
const putAuthority = (found: PendingEntity, name: string, cell: AuthorityCell) => {
  const old = found.authority?.get(name)
  if (cell.worker === null && found.tombstone !== undefined && old === undefined) return
  found.bytes += cell.bytes - (old?.bytes ?? 0)
  ;(found.authority ??= new Map()).set(name, cell)
}

/** Drops a cell if it is still the one written at `seq` (a newer op may have replaced it). */
const dropCell = (
  found: PendingEntity,
  cells: Map<string, { readonly seq: number; readonly bytes: number }>,
  name: string,
  seq: number
) => {
  const cell = cells.get(name)
  if (cell?.seq !== seq) return
  cells.delete(name)
  found.bytes -= cell.bytes
}

/** A mutable buffer of collapsed ops for one contiguous seq range. */
export class Pending {
  /** Ops folded in. */
  ops = 0
  /** Distinct keys held: components, authority entries and tombstones. */
  keys = 0
  /** The memory the held cells cost, by `cellBytes` (an estimate; what a buffer budget counts). */
  bytes = 0
  /** First and last seq covered (0 when empty). */
  fromSeq = 0
  toSeq = 0
  /** Clock time (ms) when the first op arrived. */
  firstAt = 0
  readonly entities = new Map<number, PendingEntity>()

  private entity(id: number): PendingEntity {
    let found = this.entities.get(id)
    if (found === undefined) {
      found = { tombstone: undefined, bytes: 0, components: new Map(), authority: undefined }
      this.entities.set(id, found)
      this.bytes += entityBytes
    }
    return found
  }

  /** Folds one op in. Seqs must increase by one from op to op. `bytes` is the op's `cellBytes`, if known. */
  add(op: Op.Op, seq: number, now: number, bytes = cellBytes(op)): void {
    if (this.ops === 0) {
      this.fromSeq = seq
      this.firstAt = now
    }
    this.ops++
    this.toSeq = seq
    const found = this.entity(op.entity)
    const before = keysOf(found)
    const bytesBefore = found.bytes
    switch (op.type) {
      case "set":
        putComponent(found, op.component, { removed: false, data: op.data, seq, bytes })
        break
      case "remove":
        putComponent(found, op.component, { removed: true, seq, bytes })
        break
      case "delete":
        bury(found, seq)
        break
      case "authority":
        putAuthority(found, op.component, { worker: op.worker, seq, bytes })
        break
      default:
        return absurd(op)
    }
    this.keys += keysOf(found) - before
    this.bytes += found.bytes - bytesBefore
  }

  /**
   * Folds a newer buffer (whose range follows this one's) into this one, as if its ops had been added here in
   * order. Returns this buffer.
   */
  merge(newer: Pending): Pending {
    if (newer.ops === 0) return this
    if (this.ops === 0) {
      this.fromSeq = newer.fromSeq
      this.firstAt = newer.firstAt
    }
    for (const [id, next] of newer.entities) {
      const found = this.entity(id)
      const before = keysOf(found)
      const bytesBefore = found.bytes
      // the newer delete supersedes everything older on the entity
      if (next.tombstone !== undefined) bury(found, next.tombstone)
      for (const [name, cell] of next.components) putComponent(found, name, cell)
      if (next.authority !== undefined) for (const [name, cell] of next.authority) putAuthority(found, name, cell)
      this.keys += keysOf(found) - before
      this.bytes += found.bytes - bytesBefore
    }
    this.ops += newer.ops
    this.toSeq = newer.toSeq
    return this
  }

  /**
   * Drops one of this buffer's entries (a poison entry that was dead-lettered), so that the buffer never carries
   * it again; its seq stays covered by the range. An entry the buffer no longer holds (a newer op replaced it) is
   * ignored.
   */
  discard(entry: Entry): void {
    const found = this.entities.get(entry.entity)
    if (found === undefined) return
    const before = keysOf(found)
    const bytesBefore = found.bytes
    switch (entry._tag) {
      case "Delete":
        if (found.tombstone === entry.seq) {
          found.tombstone = undefined
          found.bytes -= tombstoneBytes
        }
        break
      case "Upsert":
      case "Remove":
        dropCell(found, found.components, entry.component, entry.seq)
        break
      case "Authority":
        if (found.authority !== undefined) dropCell(found, found.authority, entry.component, entry.seq)
        break
      default:
        return absurd(entry)
    }
    this.keys += keysOf(found) - before
    this.bytes += found.bytes - bytesBefore
    if (keysOf(found) === 0) {
      this.entities.delete(entry.entity)
      this.bytes -= entityBytes + found.bytes
    }
  }

  /** The collapsed writes. */
  entries(): Array<Entry> {
    const entries: Array<Entry> = []
    for (const [entity, found] of this.entities) {
      if (found.tombstone !== undefined) entries.push({ _tag: "Delete", entity, seq: found.tombstone })
      for (const [component, cell] of found.components) {
        entries.push(
          cell.removed
            ? { _tag: "Remove", entity, component, seq: cell.seq }
            : { _tag: "Upsert", entity, component, data: cell.data, seq: cell.seq }
        )
      }
      if (found.authority === undefined) continue
      for (const [component, cell] of found.authority) {
        entries.push({ _tag: "Authority", entity, component, worker: cell.worker, seq: cell.seq })
      }
    }
    return entries
  }

  /** The batch for one transaction. */
  toBatch(sectorId: number, epoch: number, trigger: Trigger): Batch {
    return { sectorId, epoch, fromSeq: this.fromSeq, toSeq: this.toSeq, ops: this.ops, entries: this.entries(), trigger }
  }
}

/** Collapses ops with consecutive seqs from `firstSeq` into entries (for tests and tools). */
export const collapse = (ops: Iterable<Op.Op>, firstSeq = 1): Array<Entry> => {
  const pending = new Pending()
  let seq = firstSeq
  for (const op of ops) pending.add(op, seq++, 0)
  return pending.entries()
}

/** An entry in the vocabulary of ops (what it does to the sector), e.g. to show a dead letter to a client. */
export const entryToOp = (entry: Entry): Op.Op => {
  switch (entry._tag) {
    case "Upsert":
      return { type: "set", entity: entry.entity, component: entry.component, data: entry.data }
    case "Remove":
      return { type: "remove", entity: entry.entity, component: entry.component }
    case "Delete":
      return { type: "delete", entity: entry.entity }
    case "Authority":
      return { type: "authority", entity: entry.entity, component: entry.component, worker: entry.worker }
    default:
      return absurd(entry)
  }
}

/** Rows the batch writes or deletes, divided by the ops folded in: 1 means nothing collapsed. */
export const collapseRatio = (batch: Batch): number => batch.ops === 0 ? 1 : batch.entries.length / batch.ops

/** The same batch with other entries (bisection, dead-lettering); the seq range and epoch stay. */
export const withEntries = (batch: Batch, entries: ReadonlyArray<Entry>): Batch => ({ ...batch, entries })
