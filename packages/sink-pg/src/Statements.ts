/**
 * The SQL of the PostgreSQL sink, on one `SqlClient`: committing a group of batches, verifying a batch, loading
 * (claiming) a sector, writing and reading dead letters. Knows nothing of groups forming or of metrics (`SinkPg`
 * composes those).
 *
 * Every statement is a single `UNNEST` of array parameters (one stable prepared plan for every batch size, no
 * 65 535-parameter limit). The claim fence comes first (`internal/fence.ts`: the group's slot or range locks, shared,
 * then the sequence `sector_claims`), then the sector row of the sectors the fence cannot vouch for — `UPDATE sectors
 * SET persisted_seq = $to … WHERE epoch = $epoch AND persisted_seq < $to`, which fences a stale owner and skips a
 * replay in the same step — then guarded deletes for tombstones and removes, then `INSERT … ON CONFLICT DO UPDATE …
 * WHERE t.seq < EXCLUDED.seq` upserts. The common case, a group that only upserts, is one statement (`upsertGroup`:
 * the fence and both upserts as data-modifying CTEs; for a group the fence wholly vouches for, no sector row at all),
 * so one round trip and no BEGIN/COMMIT. Groups with deletes take a transaction of separate statements, because a
 * delete and an upsert of the same row may not share one statement.
 *
 * Errors are classified by SQLSTATE (`SqlState`); a connection lost inside a transaction (which the driver reports
 * as a defect) is turned back into a transient failure.
 */
import { type Batch, Errors, type SectorSink, type SectorState } from "@sectors/core"
import * as Effect from "effect/Effect"
import * as SqlClient from "effect/sql/SqlClient"
import * as SqlError from "effect/sql/SqlError"
import type * as Statement from "effect/sql/Statement"
import { type Columns, columnsOf, float8s, int4s, int8s, jsonbs, texts, writesOnly } from "./internal/columns.ts"
import { Fence, locksOf, rangeKey, slotKey, slotOf } from "./internal/fence.ts"
import { fenceLockClass } from "./Migrations.ts"
import * as SqlState from "./SqlState.ts"

/** A sector's row as the load and read statements return it. */
interface SectorRow {
  readonly epoch: bigint
  readonly persisted_seq: bigint
  readonly persisted_at: number | null
}

/** What a commit did with a sector's batch: wrote it, found it already durable, or found the sector claimed since. */
export type Outcome = "applied" | "replay" | "fenced"

/** The statements on one client; every failure is a `SinkError` whose reason says what to do with the batch. */
export interface Statements {
  /** Commits `batches` (of distinct sectors) in one transaction, or one statement; each sector's outcome. */
  readonly commit: (batches: ReadonlyArray<Batch.Batch>) => Effect.Effect<ReadonlyMap<number, Outcome>, Errors.SinkError>
  /** Runs the batch's statements and rolls them back: fails exactly as committing it would, changes nothing. */
  readonly verify: (batch: Batch.Batch) => Effect.Effect<void, Errors.SinkError>
  /** Claims the sector (its epoch goes up by one) and reads its rows. */
  readonly load: (sectorId: number) => Effect.Effect<SectorSink.LoadedSector, Errors.SinkError>
  /**
   * Reads the sector without a claim: no write, no row created (epoch 0 for a sector never claimed). The sector row
   * is read before the data rows, so the rows are at least as new as the watermark returned.
   */
  readonly read: (sectorId: number) => Effect.Effect<SectorSink.LoadedSector, Errors.SinkError>
  /** Stores dead letters. */
  readonly deadLetter: (letters: ReadonlyArray<SectorSink.DeadLetter>) => Effect.Effect<void, Errors.SinkError>
  /** A sector's dead letters, oldest first. */
  readonly deadLetters: (sectorId: number) => Effect.Effect<ReadonlyArray<SectorSink.DeadLetter>, Errors.SinkError>
}

const reasons = {
  transient: "Transient",
  rejected: "Rejected",
  fatal: "Fatal"
} as const satisfies Record<SqlState.Class, Errors.SinkErrorReason>

/** Maps a driver error to what the runtime should do with the batch. */
export const toSinkError = (error: SqlError.SqlError, what: string): Errors.SinkError => {
  const code = SqlState.codeOf(error)
  return new Errors.SinkError({
    reason: reasons[SqlState.classifyError(error)],
    message: `${what}: ${SqlState.messageOf(error)}${code === undefined ? "" : ` (${code})`}`,
    ...(code === undefined ? {} : { code }),
    cause: error
  })
}

/** The error of a batch whose sector another owner claimed since the batch's epoch. */
export const fenced = (batch: Batch.Batch): Errors.SinkError =>
  new Errors.SinkError({
    reason: "Fenced",
    message: `sector ${batch.sectorId}: claimed by another owner since epoch ${batch.epoch}`
  })

/** A connection that dies inside `withTransaction` surfaces as a defect; make it a failure again. */
const recoverConnectionLoss = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError.SqlError, R> =>
  Effect.catchDefect(
    effect,
    (defect): Effect.Effect<never, SqlError.SqlError> =>
      SqlError.isSqlError(defect) ? Effect.fail(defect) : Effect.die(defect)
  )

/** Carries `verify` out of the transaction it rolls back. */
class Rollback {
  readonly _tag = "Rollback"
}

/** How a group is fenced: the sectors `Fence` vouches for, and the `sector_claims` value they were checked at. */
interface Vouched {
  readonly sectors: ReadonlySet<number>
  readonly claims: number
}

const nobody: Vouched = { sectors: new Set(), claims: -1 }

/**
 * The CTE `f`, first of every commit: the fence's locks of the group (`locksOf`: its sectors' slots, or their ranges),
 * shared until the transaction ends, in ascending order (`unnest` keeps the array's), then — the subquery is
 * evaluated first — the last value of `sector_claims`. A group of one lock calls it once (no `unnest`, no aggregate).
 */
const claimsOf = (sql: SqlClient.SqlClient, batches: ReadonlyArray<Batch.Batch>) => {
  const keys = locksOf(batches)
  const lockClass = sql.literal(`${fenceLockClass}`)
  const locked = keys.length === 1
    ? sql`SELECT pg_advisory_xact_lock_shared(${lockClass}, ${keys[0]!}::int4)`
    : sql`SELECT count(pg_advisory_xact_lock_shared(${lockClass}, key)) FROM unnest(${int4s(keys)}::int4[]) AS key`
  return sql`f AS MATERIALIZED (
    SELECT pg_sequence_last_value('sector_claims'::regclass) AS claims FROM (${locked} OFFSET 0) AS locked)`
}

/** The one-time filter "the sequence still reads `claims`": no claim anywhere since the vouched sectors were checked. */
const holds = (sql: SqlClient.SqlClient, claims: number) => sql`(SELECT claims FROM f) = ${claims}::bigint`

/**
 * The fence of a group, as the CTEs `f`, `checked`, `rechecked` and `s` (the sectors it applies to, `checked` true
 * for those whose row it updated), to follow a `WITH`:
 * - `f` (`claimsOf`);
 * - the sectors not vouched for go through the sector-row `UPDATE` (`checked`): fence (epoch), replay guard
 *   (`persisted_seq < to`) and watermark in one step. `= ANY` lets it find the rows through the primary key: a join
 *   alone makes the planner scan every sector. Its one-time filter on `f` makes it run after the locks are held
 *   (the CTEs of a statement run in no set order otherwise);
 * - the vouched sectors apply without touching their rows while the sequence still reads `vouched.claims`; once a
 *   claim has moved it, they go through the same `UPDATE` (`rechecked`, gated so that it costs nothing otherwise).
 */
const fenceOf = (sql: SqlClient.SqlClient, batches: ReadonlyArray<Batch.Batch>, vouched: Vouched) => {
  const others = batches.filter((b) => !vouched.sectors.has(b.sectorId))
  const fast = batches.filter((b) => vouched.sectors.has(b.sectorId))
  const update = (of: ReadonlyArray<Batch.Batch>, gate: Statement.Fragment) => {
    const ids = int8s(of.map((b) => b.sectorId))
    return sql`UPDATE sectors AS s SET persisted_seq = v.to_seq, persisted_at = now()
      FROM unnest(${ids}::bigint[], ${int8s(of.map((b) => b.epoch))}::bigint[],
                  ${int8s(of.map((b) => b.toSeq))}::bigint[]) AS v(sector_id, epoch, to_seq)
      WHERE ${gate} AND s.sector_id = ANY(${ids}::bigint[]) AND s.sector_id = v.sector_id AND s.epoch = v.epoch
        AND s.persisted_seq < v.to_seq
      RETURNING s.sector_id`
  }
  // each part only when it has sectors (the statement text, so its prepared plan, differs by which parts it has)
  const parts: Array<Statement.Fragment> = [claimsOf(sql, batches)]
  const applied: Array<Statement.Fragment> = []
  if (others.length > 0) {
    parts.push(sql`checked AS (${update(others, sql`(SELECT claims FROM f) IS NOT NULL`)})`)
    applied.push(sql`SELECT sector_id, true AS checked FROM checked`)
  }
  if (fast.length > 0) {
    // runs only once the sequence has moved (a one-time filter: nothing is scanned otherwise)
    parts.push(sql`rechecked AS (${update(fast, sql`NOT ${holds(sql, vouched.claims)}`)})`)
    applied.push(sql`SELECT sector_id, true AS checked FROM rechecked`)
    applied.push(sql`SELECT sector_id, false FROM unnest(${int8s(fast.map((b) => b.sectorId))}::bigint[]) AS sector_id
      WHERE ${holds(sql, vouched.claims)}`)
  }
  parts.push(sql`s AS (${sql.join(" UNION ALL ", false)(applied)})`)
  return sql.join(",\n", false)(parts)
}

/** A sector the fence let through, and the `sector_claims` value the commit read. */
interface Applied {
  readonly sector_id: bigint
  readonly checked: boolean
  readonly claims: bigint
}

/** The final `SELECT` of a statement that ends with the fence's CTEs. */
const appliedOf = (sql: SqlClient.SqlClient) =>
  sql`SELECT sector_id, checked, (SELECT claims FROM f) AS claims FROM s`

/**
 * The upserts of a group's components and authority, each one statement over its column arrays; a row changes
 * only for a higher seq. `where` filters the unnested rows (`u`): nothing in a transaction that already left out
 * the sectors not applied, `onlyApplied` inside `upsertGroup`'s single statement.
 */
const upsertComponents = (sql: SqlClient.SqlClient, c: Columns["components"], where: Statement.Fragment) =>
  sql`INSERT INTO entity_components AS t (sector_id, entity_id, component, data, seq)
    SELECT u.* FROM unnest(${int8s(c.sector)}::bigint[], ${int8s(c.entity)}::bigint[], ${texts(c.component)}::text[],
                           ${jsonbs(c.data)}::jsonb[], ${int8s(c.seq)}::bigint[])
      AS u(sector_id, entity_id, component, data, seq)
    ${where}
    ON CONFLICT (sector_id, entity_id, component)
    DO UPDATE SET data = EXCLUDED.data, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq`

const upsertAuthority = (sql: SqlClient.SqlClient, a: Columns["authority"], where: Statement.Fragment) =>
  sql`INSERT INTO entity_authority AS t (sector_id, entity_id, component, worker, seq)
    SELECT u.* FROM unnest(${int8s(a.sector)}::bigint[], ${int8s(a.entity)}::bigint[], ${texts(a.component)}::text[],
                           ${texts(a.worker)}::text[], ${int8s(a.seq)}::bigint[])
      AS u(sector_id, entity_id, component, worker, seq)
    ${where}
    ON CONFLICT (sector_id, entity_id, component)
    DO UPDATE SET worker = EXCLUDED.worker, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq`

/** Whether any batch of the group stores idempotency keys. */
const hasKeys = (batches: ReadonlyArray<Batch.Batch>) =>
  batches.some((b) => b.idempotencyKeys !== undefined && b.idempotencyKeys.length > 0)

/** Which rows of the unnested input (`u`, `f`) a key statement takes: a filter, joined with `WHERE` or `AND`. */
type KeyFilter = (alias: "u" | "f", join: "WHERE" | "AND") => Statement.Fragment

/**
 * The idempotency keys of a group's batches (those `include` accepts), and the expired keys of the same sectors
 * (`forgetKeysExpiredBy`), as one insert and one delete, their rows filtered by `only`: in a group statement, the
 * sectors the fence let through.
 */
const keyStatements = (
  sql: SqlClient.SqlClient,
  batches: ReadonlyArray<Batch.Batch>,
  include: (sectorId: number) => boolean,
  only: KeyFilter
) => {
  const records = batches.flatMap((b) =>
    include(b.sectorId) ? (b.idempotencyKeys ?? []).map((r) => ({ sectorId: b.sectorId, ...r })) : []
  )
  const forget = batches.filter((b) => b.forgetKeysExpiredBy !== undefined && include(b.sectorId))
  return {
    store: sql`INSERT INTO idempotency_keys (sector_id, last_seq, key, fingerprint, first_seq, expires_at)
      SELECT u.sector_id, u.last_seq, u.key, u.fingerprint, u.first_seq, to_timestamp(u.expires_at / 1000.0)
      FROM unnest(${int8s(records.map((r) => r.sectorId))}::bigint[], ${int8s(records.map((r) => r.lastSeq))}::bigint[],
                  ${texts(records.map((r) => r.key))}::text[], ${texts(records.map((r) => r.fingerprint))}::text[],
                  ${int8s(records.map((r) => r.firstSeq))}::bigint[], ${float8s(records.map((r) => r.expiresAt))}::float8[])
        AS u(sector_id, last_seq, key, fingerprint, first_seq, expires_at)
      ${only("u", "WHERE")}
      ON CONFLICT (sector_id, last_seq) DO NOTHING`,
    forget: sql`DELETE FROM idempotency_keys AS k
      USING unnest(${int8s(forget.map((b) => b.sectorId))}::bigint[],
                   ${float8s(forget.map((b) => b.forgetKeysExpiredBy!))}::float8[]) AS f(sector_id, by)
      WHERE k.sector_id = f.sector_id AND k.expires_at <= to_timestamp(f.by / 1000.0) ${only("f", "AND")}`
  }
}

/** Whether the fence vouches for every batch of the group: the lean statement (`vouchedGroupOf`). */
const everyVouched = (batches: ReadonlyArray<Batch.Batch>, vouched: Vouched) =>
  batches.length > 0 && batches.every((b) => vouched.sectors.has(b.sectorId))

/**
 * The writes of a group statement as data-modifying CTEs, each only when it has rows — an empty one would still be
 * planned on every call, and a group of one sector rarely has authority rows: the upserts, their rows filtered by
 * `where`, and, when the group stores idempotency keys, the keys stored and the expired ones forgotten, filtered by
 * `only`.
 */
const writesOf = (
  sql: SqlClient.SqlClient,
  batches: ReadonlyArray<Batch.Batch>,
  columns: Columns,
  where: Statement.Fragment,
  only: KeyFilter
): Array<Statement.Fragment> => {
  const writes: Array<Statement.Fragment> = []
  if (columns.components.sector.length > 0) {
    writes.push(sql`components AS (${upsertComponents(sql, columns.components, where)})`)
  }
  if (columns.authority.sector.length > 0) {
    writes.push(sql`authority AS (${upsertAuthority(sql, columns.authority, where)})`)
  }
  if (hasKeys(batches)) {
    const keys = keyStatements(sql, batches, () => true, only)
    writes.push(sql`stored_keys AS (${keys.store})`, sql`forgotten_keys AS (${keys.forget})`)
  }
  return writes
}

/** `upsertGroup` on columns already built, for a group the fence does not wholly vouch for. */
const upsertGroupOf = (
  sql: SqlClient.SqlClient,
  batches: ReadonlyArray<Batch.Batch>,
  columns: Columns,
  vouched: Vouched
) => {
  // only the rows of sectors the fence let through (`s`)
  const writes = writesOf(
    sql,
    batches,
    columns,
    sql`WHERE u.sector_id IN (SELECT sector_id FROM s)`,
    (alias, join) => sql`${sql.literal(`${join} ${alias}`)}.sector_id IN (SELECT sector_id FROM s)`
  )
  return sql<Applied>`WITH ${sql.join(",\n", false)([fenceOf(sql, batches, vouched), ...writes])} ${appliedOf(sql)}`
}

/**
 * The lean statement of a group whose every sector the fence vouches for (the steady state): the fence's locks and
 * the sequence (`f`), then the writes behind one one-time filter — the sequence still reads `claims` — and no sector
 * row, no list of sectors. Returns the value it read: when that is not `claims`, a claim moved the sequence and the
 * statement wrote nothing.
 */
const vouchedGroupOf = (
  sql: SqlClient.SqlClient,
  batches: ReadonlyArray<Batch.Batch>,
  columns: Columns,
  claims: number
) => {
  const gate = holds(sql, claims)
  const writes = writesOf(sql, batches, columns, sql`WHERE ${gate}`, (_, join) => sql`${sql.literal(join)} ${gate}`)
  return sql<{ readonly claims: bigint }>`
    WITH ${sql.join(",\n", false)([claimsOf(sql, batches), ...writes])} SELECT claims FROM f`
}

/**
 * The single statement that commits a group of batches (of distinct sectors) that only write — no tombstone,
 * removal or cleared authority, whose entries it would skip: the fence (the slot locks and `sector_claims`, and the
 * sector-row `UPDATE` for the sectors not vouched for) and both upserts as data-modifying CTEs; the rows of sectors
 * the fence did not let through are filtered out. The sink runs it for such groups; benchmarks `EXPLAIN` it,
 * `vouched` (default: none) saying which sectors skip their row at which `sector_claims` value (all of them: the
 * lean statement of the steady state).
 */
export const upsertGroup = (
  sql: SqlClient.SqlClient,
  batches: ReadonlyArray<Batch.Batch>,
  vouched: { readonly sectors: ReadonlySet<number>; readonly claims: number } = nobody
): Statement.Statement<object> => {
  const columns = columnsOf(batches, () => true)
  return everyVouched(batches, vouched)
    ? vouchedGroupOf(sql, batches, columns, vouched.claims)
    : upsertGroupOf(sql, batches, columns, vouched)
}

/**
 * `upsertGroup` without any fence — no lock, no sequence read, no sector row: what the group's writes cost by
 * themselves. For benchmarks only (the marginal cost of the fence is the difference); the sink never sends it.
 */
export const unfencedUpsertGroup = (sql: SqlClient.SqlClient, batches: ReadonlyArray<Batch.Batch>) => {
  const all = sql.literal("")
  const writes = writesOf(sql, batches, columnsOf(batches, () => true), all, () => all)
  return sql`WITH ${sql.join(",\n", false)(writes)} SELECT 1 AS done`
}

/** The statements on the `SqlClient` in context; `fenceCapacity`: sectors the fence remembers (see `Fence`). */
export const make = (
  fenceCapacity = 100_000
): Effect.Effect<Statements, never, SqlClient.SqlClient> =>
  Effect.map(SqlClient.SqlClient, (sql) => {
  const fence = new Fence(fenceCapacity)

  /** Each sector's outcome: the ones the fence let through are applied; the others replays or fenced. */
  const outcomesOf = Effect.fnUntraced(function*(
    batches: ReadonlyArray<Batch.Batch>,
    applied: ReadonlyArray<Applied>
  ) {
    const outcomes = new Map<number, Outcome>()
    for (const row of applied) outcomes.set(Number(row.sector_id), "applied")
    const others = batches.filter((b) => !outcomes.has(b.sectorId))
    if (others.length > 0) {
      // the rare path: tell a replay (already durable) from a fenced owner
      const rows = yield* sql<{ sector_id: bigint; epoch: bigint }>`
        SELECT sector_id, epoch FROM sectors WHERE sector_id = ANY(${int8s(others.map((b) => b.sectorId))}::bigint[])`
      const epochs = new Map(rows.map((row) => [Number(row.sector_id), Number(row.epoch)]))
      for (const b of others) outcomes.set(b.sectorId, epochs.get(b.sectorId) === b.epoch ? "replay" : "fenced")
    }
    return { outcomes, applied }
  })

  /** The statements of a group, in the current transaction; returns each sector's outcome. */
  const writeGroup = Effect.fnUntraced(function*(batches: ReadonlyArray<Batch.Batch>, all: Columns, vouched: Vouched) {
    const applied = yield* sql<Applied>`WITH ${fenceOf(sql, batches, vouched)} ${appliedOf(sql)}`
    const result = yield* outcomesOf(batches, applied)
    const { outcomes } = result

    // the columns of every batch, unless one is a replay or fenced (rare): then of the applied ones only
    const { authority, cleared, components, removed, tombstones } = applied.length === batches.length
      ? all
      : columnsOf(batches, (sectorId) => outcomes.get(sectorId) === "applied")
    if (tombstones.sector.length > 0) {
      const sectors = int8s(tombstones.sector), entities = int8s(tombstones.entity), seqs = int8s(tombstones.seq)
      for (const table of ["entity_components", "entity_authority"]) {
        yield* sql`DELETE FROM ${sql(table)} AS t
          USING unnest(${sectors}::bigint[], ${entities}::bigint[], ${seqs}::bigint[]) AS d(sector_id, entity_id, seq)
          WHERE t.sector_id = d.sector_id AND t.entity_id = d.entity_id AND t.seq < d.seq`
      }
    }
    for (const [table, keys] of [["entity_components", removed], ["entity_authority", cleared]] as const) {
      if (keys.sector.length === 0) continue
      yield* sql`DELETE FROM ${sql(table)} AS t
        USING unnest(${int8s(keys.sector)}::bigint[], ${int8s(keys.entity)}::bigint[],
                     ${texts(keys.component)}::text[], ${int8s(keys.seq)}::bigint[])
          AS r(sector_id, entity_id, component, seq)
        WHERE t.sector_id = r.sector_id AND t.entity_id = r.entity_id AND t.component = r.component AND t.seq < r.seq`
    }
    if (components.sector.length > 0) yield* upsertComponents(sql, components, sql.literal(""))
    if (authority.sector.length > 0) yield* upsertAuthority(sql, authority, sql.literal(""))
    if (hasKeys(batches)) {
      const keys = keyStatements(
        sql,
        batches,
        (sectorId) => outcomes.get(sectorId) === "applied",
        () => sql.literal("")
      )
      yield* keys.store
      yield* keys.forget
    }
    return result
  })

  /**
   * The common case in one statement, so in one round trip and without BEGIN/COMMIT. A group the fence wholly vouches
   * for takes the lean statement; if a claim moved the sequence meanwhile, it wrote nothing and the group goes again,
   * every sector row checked.
   */
  const writeUpserts = Effect.fnUntraced(function*(
    batches: ReadonlyArray<Batch.Batch>,
    all: Columns,
    vouched: Vouched
  ): Effect.fn.Return<{ outcomes: Map<number, Outcome>; applied: ReadonlyArray<Applied> }, SqlError.SqlError> {
    if (!everyVouched(batches, vouched)) return yield* outcomesOf(batches, yield* upsertGroupOf(sql, batches, all, vouched))
    const [read] = yield* vouchedGroupOf(sql, batches, all, vouched.claims)
    if (read === undefined || Number(read.claims) !== vouched.claims) return yield* writeUpserts(batches, all, nobody)
    return {
      outcomes: new Map(batches.map((b) => [b.sectorId, "applied"])),
      applied: batches.map((b) => ({ sector_id: BigInt(b.sectorId), checked: false, claims: read.claims }))
    }
  })

  /**
   * One transaction for `batches` (of distinct sectors): their entries split into columns once; when nothing is
   * deleted or removed (only writes), `upsertGroup`'s single statement does it all. Batches the fence remembers as
   * applied are answered as replays without a statement; once committed, the fence learns what the commit saw.
   */
  const commit = (batches: ReadonlyArray<Batch.Batch>): Effect.Effect<ReadonlyMap<number, Outcome>, Errors.SinkError> =>
    Effect.suspend(() => {
      const outcomes = new Map<number, Outcome>()
      const written: Array<Batch.Batch> = []
      for (const batch of batches) {
        if (fence.isReplay(batch)) outcomes.set(batch.sectorId, "replay")
        else written.push(batch)
      }
      if (written.length === 0) return Effect.succeed(outcomes)
      const vouched: Vouched = {
        sectors: new Set(written.filter((b) => fence.vouches(b)).map((b) => b.sectorId)),
        claims: fence.claims
      }
      const all = columnsOf(written, () => true)
      return recoverConnectionLoss(
        writesOnly(all) ? writeUpserts(written, all, vouched) : sql.withTransaction(writeGroup(written, all, vouched))
      ).pipe(Effect.map((result) => {
        const checked = new Map(result.applied.map((row) => [Number(row.sector_id), row]))
        for (const batch of written) {
          const outcome = result.outcomes.get(batch.sectorId)!
          outcomes.set(batch.sectorId, outcome)
          const row = checked.get(batch.sectorId)
          if (row !== undefined) fence.applied(batch, Number(row.claims), row.checked)
          else if (outcome === "fenced") fence.forget(batch.sectorId)
        }
        return outcomes
      }))
    }).pipe(Effect.mapError((error) => toSinkError(error, "persist")))

  const verify = (batch: Batch.Batch): Effect.Effect<void, Errors.SinkError> =>
    recoverConnectionLoss(
      sql.withTransaction(
        Effect.flatMap(
          writeGroup([batch], columnsOf([batch], () => true), nobody),
          ({ outcomes }): Effect.Effect<never, Errors.SinkError | Rollback> =>
            outcomes.get(batch.sectorId) === "fenced" ? Effect.fail(fenced(batch)) : Effect.fail(new Rollback())
        )
      )
    ).pipe(
      Effect.catch((error) =>
        error instanceof Rollback
          ? Effect.void
          : Effect.fail(SqlError.isSqlError(error) ? toSinkError(error, "verify") : error)
      )
    )

  /** The durable rows of a sector. */
  const rowsOf = (sectorId: number) =>
    Effect.all({
      components: sql<{ entity_id: bigint; component: string; data: Record<string, never>; seq: bigint }>`
        SELECT entity_id, component, data, seq FROM entity_components WHERE sector_id = ${BigInt(sectorId)}`,
      authority: sql<{ entity_id: bigint; component: string; worker: string; seq: bigint }>`
        SELECT entity_id, component, worker, seq FROM entity_authority WHERE sector_id = ${BigInt(sectorId)}`
    }).pipe(Effect.map(({ authority, components }): SectorState.Rows => ({
      components: components.map((c) => ({
        entity: Number(c.entity_id),
        component: c.component,
        data: c.data,
        seq: Number(c.seq)
      })),
      authority: authority.map((a) => ({
        entity: Number(a.entity_id),
        component: a.component,
        worker: a.worker,
        seq: Number(a.seq)
      }))
    })))

  /** The highest seq of the rows: with the written watermark, the last committed `toSeq` (see `Fence`). */
  const highestSeq = (rows: SectorState.Rows) => {
    let highest = 0
    for (const row of rows.components) if (row.seq > highest) highest = row.seq
    for (const row of rows.authority) if (row.seq > highest) highest = row.seq
    return highest
  }

  const loaded = (sectorId: number, row: SectorRow | undefined, rows: SectorState.Rows): SectorSink.LoadedSector => ({
    sectorId,
    epoch: row === undefined ? 0 : Number(row.epoch),
    persistedSeq: row === undefined ? 0 : Math.max(Number(row.persisted_seq), highestSeq(rows)),
    persistedAt: row?.persisted_at == null ? undefined : Math.round(row.persisted_at),
    rows
  })

  const load = (sectorId: number) =>
    Effect.gen(function*() {
      // one statement, so one transaction: the sector's range, then its slot, exclusive (it waits for the group
      // commits in flight that hold either, and the ones after it wait for it to commit), the epoch bump, then a
      // number from `sector_claims`
      const lockClass = sql.literal(`${fenceLockClass}`)
      const slot = slotOf(sectorId)
      const claimed = yield* sql<SectorRow>`
        WITH locked AS MATERIALIZED (
          SELECT pg_advisory_xact_lock(${lockClass}, ${slotKey(slot)}::int4)
          FROM (SELECT pg_advisory_xact_lock(${lockClass}, ${rangeKey(slot)}::int4) OFFSET 0) AS in_range),
        claimed AS (
          INSERT INTO sectors (sector_id, epoch) SELECT ${BigInt(sectorId)}, 1 FROM locked
          ON CONFLICT (sector_id) DO UPDATE SET epoch = sectors.epoch + 1
          RETURNING epoch, persisted_seq, (extract(epoch FROM persisted_at) * 1000)::float8 AS persisted_at)
        SELECT claimed.*, nextval('sector_claims') AS claim FROM claimed`
      fence.forget(sectorId)
      // the rows as the last commit before the claim left them: every later one of the old epoch is fenced
      const rows = yield* rowsOf(sectorId)
      const keys = yield* sql<
        { key: string; fingerprint: string; first_seq: bigint; last_seq: bigint; expires_at: number }
      >`
        SELECT key, fingerprint, first_seq, last_seq, (extract(epoch FROM expires_at) * 1000)::float8 AS expires_at
        FROM idempotency_keys WHERE sector_id = ${BigInt(sectorId)}`
      return {
        ...loaded(sectorId, claimed[0], rows),
        idempotencyKeys: keys.map((k) => ({
          key: k.key,
          fingerprint: k.fingerprint,
          firstSeq: Number(k.first_seq),
          lastSeq: Number(k.last_seq),
          expiresAt: Math.round(k.expires_at)
        }))
      }
    }).pipe(Effect.mapError((error) => toSinkError(error, `load sector ${sectorId}`)))

  const read = (sectorId: number) =>
    Effect.gen(function*() {
      const found = yield* sql<SectorRow>`
        SELECT epoch, persisted_seq, (extract(epoch FROM persisted_at) * 1000)::float8 AS persisted_at
        FROM sectors WHERE sector_id = ${BigInt(sectorId)}`
      const rows = found[0] === undefined ? { components: [], authority: [] } : yield* rowsOf(sectorId)
      return loaded(sectorId, found[0], rows)
    }).pipe(Effect.mapError((error) => toSinkError(error, `read sector ${sectorId}`)))

  const deadLetter = (letters: ReadonlyArray<SectorSink.DeadLetter>) =>
    letters.length === 0 ? Effect.void : sql`
      INSERT INTO dead_letters (sector_id, seq, entry, error, code, at)
      SELECT sector_id, seq, entry, error, code, to_timestamp(at / 1000.0)
      FROM unnest(${int8s(letters.map((l) => l.sectorId))}::bigint[], ${int8s(letters.map((l) => l.seq))}::bigint[],
                  ${jsonbs(letters.map((l) => l.entry))}::jsonb[], ${texts(letters.map((l) => l.error))}::text[],
                  ${texts(letters.map((l) => l.code ?? ""))}::text[], ${float8s(letters.map((l) => l.at))}::float8[])
        AS l(sector_id, seq, entry, error, code, at)`.pipe(
      Effect.asVoid,
      Effect.mapError((error) => toSinkError(error, "dead letter"))
    )

  const deadLetters = (sectorId: number) =>
    sql<{ seq: bigint; entry: SectorSink.DeadLetter["entry"]; error: string; code: string; at: number }>`
      SELECT seq, entry, error, code, (extract(epoch FROM at) * 1000)::float8 AS at
      FROM dead_letters WHERE sector_id = ${BigInt(sectorId)} ORDER BY id`.pipe(
      Effect.map((rows) =>
        rows.map((row): SectorSink.DeadLetter => ({
          sectorId,
          seq: Number(row.seq),
          entry: row.entry,
          error: row.error,
          code: row.code === "" ? undefined : row.code,
          at: Math.round(row.at)
        }))
      ),
      Effect.mapError((error) => toSinkError(error, "read dead letters"))
    )

  return { commit, verify, load, read, deadLetter, deadLetters }
  })
