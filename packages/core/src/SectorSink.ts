/**
 * The port through which sectors persist: load a sector (claiming it), persist a batch in one idempotent
 * transaction, trial-run a batch (for isolating a poison op), and record dead letters. Core never imports SQL;
 * @sectors/sink-pg implements this on PostgreSQL, `layerMemory` in process, and the test kit wraps any sink with
 * fault injection.
 *
 * Contract every implementation keeps (the conformance suite in the test kit checks it):
 * - `load` claims the sector: it increments the sector's epoch and returns it with the durable rows and watermark.
 * - `read` returns the same without claiming: the epoch is not touched and a sector never written stays without a
 *   trace (epoch 0, watermark 0, no rows). Reads of sectors a host does not hold go through it, so a read never
 *   fences the owner.
 * - `persist` applies a batch atomically. It fails with `Fenced` if the sector's epoch is no longer the batch's
 *   (another owner claimed it), does nothing for a batch whose `toSeq` is at or below the watermark (a replay), and
 *   guards every row write by seq (a row changes only for a higher seq), so retrying a batch never changes anything
 *   twice. On commit the watermark becomes `toSeq`,
 *   and the batch's idempotency keys are stored with it (one per last seq; a key stays stored at least until a
 *   later batch's `forgetKeysExpiredBy` passes its expiry); `load` returns them.
 * - `verify` runs the same writes and rolls them back, failing exactly as `persist` would.
 * - `deadLetter` records entries that can never be persisted; `deadLetters` lists a sector's, oldest first.
 * - errors are `SinkError`s whose `reason` says whether to retry (`Transient`), isolate (`Rejected`), stop
 *   (`Fenced`) or hold everything and alert (`Fatal`).
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Batch, Entry, IdempotencyRecord } from "./Batch.ts"
import { SinkError } from "./Errors.ts"
import * as SectorState from "./SectorState.ts"

/** A sector as loaded by its new owner. */
export interface LoadedSector {
  readonly sectorId: number
  /** The epoch this load claimed; every batch of this owner carries it. */
  readonly epoch: number
  /** Every op up to this seq is durable. 0 for a new sector. */
  readonly persistedSeq: number
  /** When the watermark last moved (ms since the epoch); undefined for a new sector. */
  readonly persistedAt: number | undefined
  readonly rows: SectorState.Rows
  /** Keyed submissions stored with its batches (`load` returns them; `read` need not). Absent: none. */
  readonly idempotencyKeys?: ReadonlyArray<IdempotencyRecord> | undefined
}

/** An entry the sink rejected for its data, recorded instead of persisted. */
export interface DeadLetter {
  readonly sectorId: number
  readonly seq: number
  readonly entry: Entry
  /** Why the sink rejected it. */
  readonly error: string
  /** The sink's error code (SQLSTATE) when known. */
  readonly code?: string | undefined
  /** When it was dead-lettered (ms since the epoch). */
  readonly at: number
}

/** The persistence port. */
export class SectorSink extends Context.Service<SectorSink, {
  /** Claims the sector (epoch + 1) and reads its durable state. */
  readonly load: (sectorId: number) => Effect.Effect<LoadedSector, SinkError>
  /** Reads the sector's durable state without claiming it or creating anything (epoch 0 if never claimed). */
  readonly read: (sectorId: number) => Effect.Effect<LoadedSector, SinkError>
  /** Persists a batch in one transaction; a replay of a committed batch is a no-op. */
  readonly persist: (batch: Batch) => Effect.Effect<void, SinkError>
  /** Runs the batch's writes and rolls them back: fails as `persist` would, changes nothing. */
  readonly verify: (batch: Batch) => Effect.Effect<void, SinkError>
  /** Records entries that can never be persisted, with their errors. */
  readonly deadLetter: (letters: ReadonlyArray<DeadLetter>) => Effect.Effect<void, SinkError>
  /** The dead letters of a sector, oldest first. */
  readonly deadLetters: (sectorId: number) => Effect.Effect<ReadonlyArray<DeadLetter>, SinkError>
}>()("@sectors/core/SectorSink") {}

interface StoredSector {
  epoch: number
  persistedSeq: number
  persistedAt: number | undefined
  readonly state: SectorState.SectorState
  /** Stored idempotency keys, by their submission's last seq. */
  readonly keys: Map<number, IdempotencyRecord>
}

/** The in-process store behind `layerMemory`, open for inspection (the test kit's `MemorySink`). */
export interface MemoryStore {
  /** The durable rows of a sector. */
  readonly rows: (sectorId: number) => SectorState.Rows
  /** The watermark and epoch of a sector (undefined if never loaded). */
  readonly sector: (
    sectorId: number
  ) => { readonly epoch: number; readonly persistedSeq: number; readonly persistedAt: number | undefined } | undefined
  /** Every commit that changed something, in order, with the clock time it happened at. */
  readonly commits: ReadonlyArray<Commit>
  /**
   * Entries that changed the stored state more than once (by sector, kind, key and seq). Seq guards make this
   * impossible for a correct runtime: any entry here was applied twice.
   */
  readonly appliedTwice: () => ReadonlyArray<string>
  /** Replays skipped because they were at or below the watermark. */
  readonly replays: () => number
  /** Dead letters, in order. */
  readonly deadLetters: ReadonlyArray<DeadLetter>
  /** Sectors ever loaded. */
  readonly sectorIds: () => ReadonlyArray<number>
  /** The idempotency keys stored for a sector, by last seq. */
  readonly idempotencyKeys: (sectorId: number) => ReadonlyArray<IdempotencyRecord>
}

/** One commit of the memory store. */
export interface Commit {
  readonly sectorId: number
  readonly fromSeq: number
  readonly toSeq: number
  readonly ops: number
  readonly rows: number
  readonly at: number
}

const fenced = (batch: Batch, epoch: number | undefined) =>
  new SinkError({
    reason: "Fenced",
    message: `sector ${batch.sectorId}: batch of epoch ${batch.epoch} but the sector is at epoch ${epoch ?? "none"}`
  })

/** An in-process sink with the full contract (fencing, replay, seq guards) and an inspectable store. */
export const makeMemory: Effect.Effect<{ readonly sink: SectorSink["Service"]; readonly store: MemoryStore }> = Effect
  .sync(() => {
    const sectors = new Map<number, StoredSector>()
    const commits: Array<Commit> = []
    const deadLetters: Array<DeadLetter> = []
    let replays = 0
    const applied = new Map<string, number>()
    const keyOf = (sectorId: number, entry: Entry) =>
      `${sectorId}:${entry._tag}:${entry.entity}:${"component" in entry ? entry.component : ""}@${entry.seq}`

    const check = (batch: Batch) => {
      const stored = sectors.get(batch.sectorId)
      return stored === undefined || stored.epoch !== batch.epoch ? fenced(batch, stored?.epoch) : stored
    }

    const sink = SectorSink.of({
      load: (sectorId) =>
        Effect.sync(() => {
          let stored = sectors.get(sectorId)
          if (stored === undefined) {
            stored = { epoch: 0, persistedSeq: 0, persistedAt: undefined, state: SectorState.make(), keys: new Map() }
            sectors.set(sectorId, stored)
          }
          stored.epoch++
          return {
            sectorId,
            epoch: stored.epoch,
            persistedSeq: stored.persistedSeq,
            persistedAt: stored.persistedAt,
            rows: SectorState.toRows(stored.state),
            idempotencyKeys: [...stored.keys.values()]
          }
        }),
      read: (sectorId) =>
        Effect.sync(() => {
          const stored = sectors.get(sectorId)
          return stored === undefined
            ? { sectorId, epoch: 0, persistedSeq: 0, persistedAt: undefined, rows: { components: [], authority: [] } }
            : {
              sectorId,
              epoch: stored.epoch,
              persistedSeq: stored.persistedSeq,
              persistedAt: stored.persistedAt,
              rows: SectorState.toRows(stored.state)
            }
        }),
      persist: (batch) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const stored = check(batch)
          if (stored instanceof SinkError) return Effect.fail(stored)
          if (batch.toSeq <= stored.persistedSeq) {
            replays++
            return Effect.void
          }
          SectorState.applyEntries(stored.state, batch.entries, (entry) => {
            const key = keyOf(batch.sectorId, entry)
            applied.set(key, (applied.get(key) ?? 0) + 1)
          })
          stored.persistedSeq = batch.toSeq
          stored.persistedAt = now
          for (const record of batch.idempotencyKeys ?? []) {
            if (!stored.keys.has(record.lastSeq)) stored.keys.set(record.lastSeq, record)
          }
          if (batch.forgetKeysExpiredBy !== undefined) {
            for (const [seq, record] of stored.keys) {
              if (record.expiresAt <= batch.forgetKeysExpiredBy) stored.keys.delete(seq)
            }
          }
          commits.push({
            sectorId: batch.sectorId,
            fromSeq: batch.fromSeq,
            toSeq: batch.toSeq,
            ops: batch.ops,
            rows: batch.entries.length,
            at: now
          })
          return Effect.void
        }),
      verify: (batch) =>
        Effect.suspend(() => {
          const stored = check(batch)
          return stored instanceof SinkError ? Effect.fail(stored) : Effect.void
        }),
      deadLetter: (letters) => Effect.sync(() => void deadLetters.push(...letters)),
      deadLetters: (sectorId) => Effect.sync(() => deadLetters.filter((letter) => letter.sectorId === sectorId))
    })

    const store: MemoryStore = {
      rows: (sectorId) => {
        const stored = sectors.get(sectorId)
        return stored === undefined ? { components: [], authority: [] } : SectorState.toRows(stored.state)
      },
      sector: (sectorId) => {
        const stored = sectors.get(sectorId)
        return stored === undefined
          ? undefined
          : { epoch: stored.epoch, persistedSeq: stored.persistedSeq, persistedAt: stored.persistedAt }
      },
      commits,
      appliedTwice: () => [...applied].filter(([, count]) => count > 1).map(([key]) => key),
      replays: () => replays,
      deadLetters,
      sectorIds: () => [...sectors.keys()],
      idempotencyKeys: (sectorId) => [...(sectors.get(sectorId)?.keys.values() ?? [])]
    }
    return { sink, store }
  })

/** An in-process sink: state lives as long as the layer. For tests, demos and embedding without a database. */
export const layerMemory: Layer.Layer<SectorSink> = Layer.effect(SectorSink, Effect.map(makeMemory, (_) => _.sink))
