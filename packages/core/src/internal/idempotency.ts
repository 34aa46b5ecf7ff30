/**
 * What a host remembers of keyed submissions (`SubmitOptions.idempotency`), so that a retry is answered with the
 * original seqs instead of being applied again.
 *
 * One store per host, for all its sectors: every key it holds counts against one cap (`maxIdempotencyKeys`), and
 * the oldest key goes first when a new one needs room, as it does when it is older than `idempotencyTtl`. A key is
 * entered the moment its submission enters a mailbox (`pending`: a second arrival waits for the first one's seqs),
 * becomes `accepted` when the sector gives it seqs, and leaves again if the submission was refused or its ops were
 * lost (a fenced or stopped sector), so a retry of something that was never persisted is applied, not answered.
 *
 * The sector persists a key with the batch that makes its last op durable (same transaction), so a retry after a
 * crash or a failover is recognised too: a new owner loads the keys still within the TTL (`adopt`).
 */
import type * as Deferred from "effect/Deferred"
import type { IdempotencyRecord } from "../Batch.ts"
import type { SectorFenced, ShuttingDown } from "../Errors.ts"

/** The seqs a pending submission will get, or why it was refused. */
export type Seqs = Deferred.Deferred<readonly [number, number], ShuttingDown | SectorFenced>

/** A key waiting for its submission's seqs. */
export interface Pending {
  readonly _tag: "Pending"
  readonly sectorId: number
  readonly key: string
  readonly fingerprint: string
  readonly seqs: Seqs
}

/** A key whose submission has seqs. */
export interface Accepted extends IdempotencyRecord {
  readonly _tag: "Accepted"
  readonly sectorId: number
}

export type Entry = Pending | Accepted

const slot = (sectorId: number, key: string) => `${sectorId}\u0000${key}`

/** The keys of one host. */
export class IdempotencyStore {
  /** By sector and key, oldest first (a `Map` iterates in insertion order; every entry is (re)inserted when made). */
  private readonly entries = new Map<string, Entry>()
  readonly ttlMillis: number
  readonly maxKeys: number

  constructor(options: { readonly ttlMillis: number; readonly maxKeys: number }) {
    this.ttlMillis = options.ttlMillis
    this.maxKeys = options.maxKeys
  }

  /** Keys held now. */
  get size(): number {
    return this.entries.size
  }

  /** The entry of a key, if it is still remembered at `now`. */
  find(sectorId: number, key: string, now: number): Entry | undefined {
    this.expire(now)
    return this.entries.get(slot(sectorId, key))
  }

  /** Enters a submission about to enter a mailbox; its seqs come through `seqs`. */
  begin(sectorId: number, key: string, fingerprint: string, seqs: Seqs, now: number): Pending {
    const pending: Pending = { _tag: "Pending", sectorId, key, fingerprint, seqs }
    this.put(slot(sectorId, key), pending, now)
    return pending
  }

  /** The pending submission got seqs: the key now answers with them. */
  accept(pending: Pending, firstSeq: number, lastSeq: number, at: number): IdempotencyRecord {
    const accepted: Accepted = {
      _tag: "Accepted",
      sectorId: pending.sectorId,
      key: pending.key,
      fingerprint: pending.fingerprint,
      firstSeq,
      lastSeq,
      at
    }
    const id = slot(pending.sectorId, pending.key)
    // the same object: still this submission's key (not evicted, not replaced)
    if (this.entries.get(id) === pending) {
      this.entries.delete(id)
      this.entries.set(id, accepted)
    }
    return accepted
  }

  /** Forgets a key whose submission was refused or whose ops were lost: a retry must apply it. */
  forget(sectorId: number, key: string, entry: Entry | IdempotencyRecord): void {
    const id = slot(sectorId, key)
    const held = this.entries.get(id)
    if (held === entry || (held?._tag === "Accepted" && "lastSeq" in entry && held.lastSeq === entry.lastSeq)) {
      this.entries.delete(id)
    }
  }

  /** Takes in what a sink stored for a sector (on load): the keys still within the TTL. */
  adopt(sectorId: number, records: ReadonlyArray<IdempotencyRecord>, now: number): void {
    for (const record of [...records].sort((a, b) => a.at - b.at)) {
      if (record.at + this.ttlMillis <= now) continue
      const id = slot(sectorId, record.key)
      const held = this.entries.get(id)
      if (held !== undefined && (held._tag === "Pending" || held.lastSeq >= record.lastSeq)) continue
      this.put(id, { _tag: "Accepted", sectorId, ...record }, now)
    }
  }

  private put(id: string, entry: Entry, now: number): void {
    this.entries.delete(id)
    this.expire(now)
    while (this.entries.size >= this.maxKeys) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) break
      this.entries.delete(oldest.value)
    }
    this.entries.set(id, entry)
  }

  /** Drops accepted keys older than the TTL, oldest first (pending ones wait for their seqs). */
  private expire(now: number): void {
    for (const [id, entry] of this.entries) {
      if (entry._tag === "Pending") continue
      if (entry.at + this.ttlMillis > now) break
      this.entries.delete(id)
    }
  }
}
