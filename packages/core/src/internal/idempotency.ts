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
  /** How long the key is remembered once its submission has seqs. */
  readonly ttlMillis: number
  /** When it was entered (ms since the epoch): the order in which keys make room. */
  readonly since: number
}

/** A key whose submission has seqs. */
export interface Accepted extends IdempotencyRecord {
  readonly _tag: "Accepted"
  readonly sectorId: number
  readonly ttlMillis: number
  readonly since: number
}

export type Entry = Pending | Accepted

const slot = (sectorId: number, key: string) => `${sectorId}\u0000${key}`

/**
 * The keys of one host. Keys are kept in lanes, one per TTL, each in the order its keys were entered, which within a
 * lane is also the order in which they expire: expiring is a walk from the front of each lane that stops at the
 * first key still valid. (Keys taken in from a sink go to the lane of the store's TTL whatever theirs was: one
 * expiring out of order there is remembered a little longer, never shorter.)
 */
export class IdempotencyStore {
  /** By TTL, then by sector and key, oldest first (a `Map` iterates in insertion order). */
  private readonly lanes = new Map<number, Map<string, Entry>>()
  /** Which lane holds a key. */
  private readonly index = new Map<string, Map<string, Entry>>()
  readonly ttlMillis: number
  readonly maxKeys: number

  constructor(options: { readonly ttlMillis: number; readonly maxKeys: number }) {
    this.ttlMillis = options.ttlMillis
    this.maxKeys = options.maxKeys
  }

  /** Keys held now. */
  get size(): number {
    return this.index.size
  }

  /** The entry of a key, if it is still remembered at `now`. */
  find(sectorId: number, key: string, now: number): Entry | undefined {
    this.expire(now)
    const id = slot(sectorId, key)
    return this.index.get(id)?.get(id)
  }

  /**
   * Enters a submission about to enter a mailbox; its seqs come through `seqs`. Remembered for `ttlMillis` once it
   * has them (the store's TTL unless given).
   */
  begin(
    sectorId: number,
    key: string,
    fingerprint: string,
    seqs: Seqs,
    now: number,
    ttlMillis: number = this.ttlMillis
  ): Pending {
    const pending: Pending = { _tag: "Pending", sectorId, key, fingerprint, seqs, ttlMillis, since: now }
    this.put(slot(sectorId, key), pending, now)
    return pending
  }

  /** The pending submission got seqs at `now`: the key now answers with them, until its TTL has passed. */
  accept(pending: Pending, firstSeq: number, lastSeq: number, now: number): IdempotencyRecord {
    const accepted: Accepted = {
      _tag: "Accepted",
      sectorId: pending.sectorId,
      key: pending.key,
      fingerprint: pending.fingerprint,
      firstSeq,
      lastSeq,
      expiresAt: now + pending.ttlMillis,
      ttlMillis: pending.ttlMillis,
      since: now
    }
    const id = slot(pending.sectorId, pending.key)
    // the same object: still this submission's key (not evicted, not replaced); moved to the back of its lane
    if (this.index.get(id)?.get(id) === pending) this.put(id, accepted, now)
    return { key: accepted.key, fingerprint: accepted.fingerprint, firstSeq, lastSeq, expiresAt: accepted.expiresAt }
  }

  /** Forgets a key whose submission was refused or whose ops were lost: a retry must apply it. */
  forget(sectorId: number, key: string, entry: Entry | IdempotencyRecord): void {
    const id = slot(sectorId, key)
    const held = this.index.get(id)?.get(id)
    if (held === entry || (held?._tag === "Accepted" && "lastSeq" in entry && held.lastSeq === entry.lastSeq)) {
      this.remove(id)
    }
  }

  /** Takes in what a sink stored for a sector (on load): the keys not yet expired. */
  adopt(sectorId: number, records: ReadonlyArray<IdempotencyRecord>, now: number): void {
    for (const record of [...records].sort((a, b) => a.expiresAt - b.expiresAt)) {
      if (record.expiresAt <= now) continue
      const id = slot(sectorId, record.key)
      const held = this.index.get(id)?.get(id)
      if (held !== undefined && (held._tag === "Pending" || held.lastSeq >= record.lastSeq)) continue
      this.put(id, { _tag: "Accepted", sectorId, ...record, ttlMillis: this.ttlMillis, since: now }, now)
    }
  }

  private remove(id: string): void {
    const lane = this.index.get(id)
    if (lane === undefined) return
    lane.delete(id)
    this.index.delete(id)
  }

  private put(id: string, entry: Entry, now: number): void {
    this.remove(id)
    this.expire(now)
    while (this.index.size >= this.maxKeys) this.evictOldest()
    let lane = this.lanes.get(entry.ttlMillis)
    if (lane === undefined) this.lanes.set(entry.ttlMillis, lane = new Map())
    lane.set(id, entry)
    this.index.set(id, lane)
  }

  /** Makes room: the key entered first, over all lanes. */
  private evictOldest(): void {
    let oldest: { readonly id: string; readonly since: number } | undefined
    for (const lane of this.lanes.values()) {
      const first = lane.entries().next()
      if (first.done === true) continue
      const [id, entry] = first.value
      if (oldest === undefined || entry.since < oldest.since) oldest = { id, since: entry.since }
    }
    if (oldest !== undefined) this.remove(oldest.id)
  }

  /** Drops accepted keys whose TTL has passed, from the front of each lane (pending ones wait for their seqs). */
  private expire(now: number): void {
    for (const lane of this.lanes.values()) {
      for (const [id, entry] of lane) {
        if (entry._tag === "Pending") continue
        if (entry.expiresAt > now) break
        this.remove(id)
      }
    }
  }
}
