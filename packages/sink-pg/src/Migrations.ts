/**
 * The schema of the PostgreSQL sink, as effect/sql migrations run at start-up. Safe to run from several hosts at
 * once: effect/sql's `Migrator` runs them in one transaction that first locks its migrations table, so a second
 * starter waits and then finds nothing left to do.
 *
 * Tables and why they have the indexes they have (only the queries we run):
 * - `sectors(sector_id PK, epoch, persisted_seq, persisted_at)` — one row per sector. Claimed by
 *   `INSERT … ON CONFLICT DO UPDATE SET epoch = epoch + 1`; written by an `UPDATE … WHERE epoch = $ AND persisted_seq
 *   < $` (fence, replay guard and watermark) only by the batches the claim fence cannot vouch for (see
 *   `Statements`): the first of a sector after a claim anywhere, and those whose last op leaves no row. The primary
 *   key is the only index.
 * - `sector_claims`, a sequence: every claim draws a number from it in its own statement, so its last value changes
 *   whenever a sector changes hands. Every group commit takes its sectors' slot (or range) locks (`fenceLockClass`)
 *   shared for the rest of its transaction, then reads the sequence's last value (`pg_sequence_last_value`: without a snapshot,
 *   sequences are not transactional).
 * - `sector_watermarks(sector_id, epoch, persisted_at, persisted_seq)`, a view: a sector's durable watermark is the
 *   greater of `sectors.persisted_seq` and its rows' highest seq (what `load` returns). Read it, not
 *   `sectors.persisted_seq`, from outside the sink.
 * - `entity_components(sector_id, entity_id, component, data jsonb, seq)`, PK `(sector_id, entity_id, component)`:
 *   the upsert's conflict target, the guarded deletes (prefix `(sector_id, entity_id)` for a tombstone, the full key
 *   for a remove) and the load (prefix `sector_id`) all use the primary key; no second index to maintain on every
 *   write. `fillfactor = 80` leaves room in each page so most upserts (which change `data` and `seq`, no indexed
 *   column) are HOT updates that touch no index at all.
 * - `entity_authority(sector_id, entity_id, component, worker, seq)`, same key and reasoning.
 * - `dead_letters(id, sector_id, seq, entry jsonb, error, code, at)` with an index on `(sector_id, id)` for the one
 *   query that reads them (a sector's letters, oldest first). Rare writes, so the index costs nothing.
 * - `idempotency_keys(sector_id, last_seq, key, fingerprint, first_seq, expires_at)`, PK `(sector_id, last_seq)`: a keyed
 *   submission, inserted with the batch that made its last op durable (`ON CONFLICT DO NOTHING` on the key makes a
 *   replayed batch store nothing twice), read by prefix `sector_id` on load. The index `(sector_id, expires_at)` lets the
 *   commit that stores a sector's new keys delete its expired ones by a range scan. Written only for submissions
 *   that carry an idempotency key.
 */
import * as Effect from "effect/Effect"
import * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"

/**
 * The `classid` of the claim fence's locks (the ASCII bytes of `secf`): `pg_advisory_xact_lock_shared(fenceLockClass,
 * key)` with key 0–63 a slot (sector id modulo 64) and 64–71 a range of 8 slots (`pg_locks`: classid 1936024422,
 * objid the key, objsubid 2). Every group commit holds its sectors' slots (or, past 8 of them, their ranges) shared
 * until it ends; a claim holds its sector's range and slot exclusive while it bumps the epoch and draws from
 * `sector_claims`. The two-int form never meets `HostLock.key` (one bigint, objsubid 1); effect's shard locks use the
 * two-int form too, under `classid` = an FNV-1a hash of `effect-cluster:<prefix>` (prefix `cluster`: 0xa940cd03),
 * which a table prefix would have to hash to exactly this value to meet. The keys and the mapping are part of the
 * format: every host of a database must use the same.
 */
export const fenceLockClass = 0x73656366

/** The table recording which migrations ran. */
export const table = "sectors_migrations"

/** The migrations, by `<id>_<name>`. Each statement runs on its own (the driver takes one statement per query). */
export const migrations: Record<string, Effect.Effect<void, SqlError, SqlClient.SqlClient>> = {
  "1_create_tables": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE sectors (
      sector_id bigint PRIMARY KEY,
      epoch bigint NOT NULL DEFAULT 0,
      persisted_seq bigint NOT NULL DEFAULT 0,
      persisted_at timestamptz
    )`
    yield* sql`CREATE TABLE entity_components (
      sector_id bigint NOT NULL,
      entity_id bigint NOT NULL,
      component text NOT NULL,
      data jsonb NOT NULL,
      seq bigint NOT NULL,
      PRIMARY KEY (sector_id, entity_id, component)
    ) WITH (fillfactor = 80)`
    yield* sql`CREATE TABLE entity_authority (
      sector_id bigint NOT NULL,
      entity_id bigint NOT NULL,
      component text NOT NULL,
      worker text NOT NULL,
      seq bigint NOT NULL,
      PRIMARY KEY (sector_id, entity_id, component)
    ) WITH (fillfactor = 80)`
    yield* sql`CREATE TABLE dead_letters (
      id bigserial PRIMARY KEY,
      sector_id bigint NOT NULL,
      seq bigint NOT NULL,
      entry jsonb NOT NULL,
      error text NOT NULL,
      code text,
      at timestamptz NOT NULL
    )`
    yield* sql`CREATE INDEX dead_letters_sector ON dead_letters (sector_id, id)`
  }),
  "2_idempotency_keys": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE idempotency_keys (
      sector_id bigint NOT NULL,
      last_seq bigint NOT NULL,
      key text NOT NULL,
      fingerprint text NOT NULL,
      first_seq bigint NOT NULL,
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (sector_id, last_seq)
    )`
    yield* sql`CREATE INDEX idempotency_keys_expiry ON idempotency_keys (sector_id, expires_at)`
  }),
  "3_claim_fence": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE SEQUENCE sector_claims`
    // called once, so that `pg_sequence_last_value` is never null
    yield* sql`SELECT nextval('sector_claims')`
    yield* sql`CREATE VIEW sector_watermarks AS
      SELECT s.sector_id, s.epoch, s.persisted_at, greatest(s.persisted_seq,
        coalesce((SELECT max(c.seq) FROM entity_components c WHERE c.sector_id = s.sector_id), 0),
        coalesce((SELECT max(a.seq) FROM entity_authority a WHERE a.sector_id = s.sector_id), 0)) AS persisted_seq
      FROM sectors s`
  })
}

/** Runs every pending migration (concurrent runs wait for each other); returns the ones it ran (`[id, name]`). */
export const run: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  Migrator.MigrationError | SqlError,
  SqlClient.SqlClient
> = Migrator.make({})({ loader: Migrator.fromRecord(migrations), table })
