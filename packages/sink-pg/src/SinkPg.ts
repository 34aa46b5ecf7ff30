/**
 * `SectorSink` on PostgreSQL through @effect/sql-pg.
 *
 * A batch is one transaction; every statement is a single `UNNEST` of array parameters (one stable prepared plan for
 * every batch size, no 65 535-parameter limit). The sector row comes first — `UPDATE sectors SET persisted_seq =
 * $to … WHERE epoch = $epoch AND persisted_seq < $to`, which fences a stale owner and skips a replay in the same
 * step — then guarded deletes for tombstones and removes, then `INSERT … ON CONFLICT DO UPDATE … WHERE t.seq <
 * EXCLUDED.seq` upserts. No statement reads before it writes. The common case, batches that only upsert, is one
 * statement (the sector update and both upserts as data-modifying CTEs): one round trip, no BEGIN/COMMIT. Batches
 * with deletes take the multi-statement transaction, because a delete and an upsert of the same row may not share
 * one statement.
 *
 * **Group commit** (`GroupCommit`, keyed by sector, sized in entries): batches of different sectors that are waiting
 * at the same moment share one transaction (it stops taking batches at `maxGroupRows` rows); `writers` such
 * transactions run at once. Each sector is still answered on its own: a fenced sector fails alone, a replayed one
 * succeeds as a no-op. If a group fails for anything but a transient error (its data, most often), every batch of it
 * is retried in a transaction of its own, so that the failure reaches only the sector at fault (whose runtime then
 * bisects to the poison op).
 *
 * Errors are classified by SQLSTATE (`SqlState`); a connection lost inside a transaction (which the driver reports
 * as a defect) is turned back into a transient failure.
 */
import { PgClient, PgTypes } from "@effect/sql-pg"
import { type Batch, Errors, SectorSink } from "@sectors/core"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { absurd } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import type * as Statement from "effect/sql/Statement"
import * as SqlError from "effect/sql/SqlError"
import * as GroupCommit from "./GroupCommit.ts"
import * as Migrations from "./Migrations.ts"
import * as SqlState from "./SqlState.ts"

/** Tuning of the sink. Every field is optional. */
export interface Options {
  /** Group transactions in flight at once. Defaults to `3` (a small server saturates with 2–4 writers). */
  readonly writers?: number | undefined
  /** A group stops taking batches once it holds this many rows (a batch is never split). Defaults to `5000`. */
  readonly maxGroupRows?: number | undefined
  /** How long a writer waits for more batches before it commits a group. Defaults to 0: it takes what is queued. */
  readonly groupWindow?: Duration.Input | undefined
  /** Most batches (sectors) one transaction carries; `1` turns group commit off. Defaults to no limit. */
  readonly maxGroupBatches?: number | undefined
}

/** The defaults of `Options`. */
export const defaults = {
  writers: 3,
  maxGroupRows: 5000,
  groupWindow: Duration.zero,
  maxGroupBatches: Number.POSITIVE_INFINITY
} as const

/** Transactions the sink committed (one per group). */
export const transactions = Metric.counter("sectors_pg_transactions_total", {
  description: "Transactions the PostgreSQL sink committed (a group of batches each)",
  incremental: true
})

/** Batches per committed group transaction. */
export const groupSize = Metric.histogram("sectors_pg_group_batches", {
  description: "Batches of different sectors sharing one transaction",
  boundaries: [1, 2, 4, 8, 16, 32, 64, 128, 256]
})

/** Groups that failed with a non-transient error (`Rejected`, `Fatal`) and were retried one batch per transaction. */
export const fallbacks = Metric.counter("sectors_pg_group_fallbacks_total", {
  description: "Group transactions split into one transaction per sector after a non-transient error",
  incremental: true
})

const param = (result: Result.Result<PgTypes.Parameter, PgTypes.CodecError>) => Result.getOrThrow(result)
const int8s = (values: ReadonlyArray<number>) => param(PgTypes.array(values.map(BigInt), PgTypes.OID.int8))
const texts = (values: ReadonlyArray<string>) => param(PgTypes.array(values, PgTypes.OID.text))
const jsonbs = (values: ReadonlyArray<unknown>) => param(PgTypes.array(values, PgTypes.OID.jsonb))

/** Maps a driver error to what the runtime should do with the batch. */
export const toSinkError = (error: SqlError.SqlError, what: string): Errors.SinkError => {
  const code = SqlState.codeOf(error)
  const kind = SqlState.classifyError(error)
  return new Errors.SinkError({
    reason: kind === "transient" ? "Transient" : kind === "rejected" ? "Rejected" : "Fatal",
    message: `${what}: ${SqlState.messageOf(error)}${code === undefined ? "" : ` (${code})`}`,
    ...(code === undefined ? {} : { code }),
    cause: error
  })
}

/** A connection that dies inside `withTransaction` surfaces as a defect; make it a failure again. */
const recoverConnectionLoss = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError.SqlError, R> =>
  Effect.catchDefect(
    effect,
    (defect): Effect.Effect<never, SqlError.SqlError> =>
      SqlError.isSqlError(defect) ? Effect.fail(defect) : Effect.die(defect)
  )

/** What happened to each sector of a group. */
type Outcome = "applied" | "replay" | "fenced"

class Rollback {
  readonly _tag = "Rollback"
}

/** Column arrays of one kind of write, for an `UNNEST`. */
interface KeyColumns {
  readonly sector: Array<number>
  readonly entity: Array<number>
  readonly component: Array<string>
  readonly seq: Array<number>
}

/** Every write of a group, by kind, as column arrays. */
interface Columns {
  readonly tombstones: { readonly sector: Array<number>; readonly entity: Array<number>; readonly seq: Array<number> }
  readonly removed: KeyColumns
  readonly cleared: KeyColumns
  readonly components: KeyColumns & { readonly data: Array<unknown> }
  readonly authority: KeyColumns & { readonly worker: Array<string> }
}

const keyColumns = (): KeyColumns => ({ sector: [], entity: [], component: [], seq: [] })

const pushKey = (columns: KeyColumns, sector: number, entity: number, component: string, seq: number) => {
  columns.sector.push(sector)
  columns.entity.push(entity)
  columns.component.push(component)
  columns.seq.push(seq)
}

/** Splits the entries of `batches` (those `include` accepts) into column arrays by kind. */
const columnsOf = (batches: ReadonlyArray<Batch.Batch>, include: (sectorId: number) => boolean): Columns => {
  const columns: Columns = {
    tombstones: { sector: [], entity: [], seq: [] },
    removed: keyColumns(),
    cleared: keyColumns(),
    components: { ...keyColumns(), data: [] },
    authority: { ...keyColumns(), worker: [] }
  }
  for (const batch of batches) {
    if (!include(batch.sectorId)) continue
    const sector = batch.sectorId
    for (const entry of batch.entries) {
      switch (entry._tag) {
        case "Delete":
          columns.tombstones.sector.push(sector)
          columns.tombstones.entity.push(entry.entity)
          columns.tombstones.seq.push(entry.seq)
          break
        case "Remove":
          pushKey(columns.removed, sector, entry.entity, entry.component, entry.seq)
          break
        case "Upsert":
          pushKey(columns.components, sector, entry.entity, entry.component, entry.seq)
          columns.components.data.push(entry.data)
          break
        case "Authority":
          if (entry.worker === null) {
            pushKey(columns.cleared, sector, entry.entity, entry.component, entry.seq)
          } else {
            pushKey(columns.authority, sector, entry.entity, entry.component, entry.seq)
            columns.authority.worker.push(entry.worker)
          }
          break
        default:
          // a new kind of entry must be given its columns here
          absurd(entry)
      }
    }
  }
  return columns
}

/** Builds the sink on the `SqlClient` in context; starts its writers in the current scope. */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const sql = yield* SqlClient.SqlClient
  const context = yield* Effect.context<never>()
  const writers = options.writers ?? defaults.writers
  const maxGroupRows = options.maxGroupRows ?? defaults.maxGroupRows
  const groupWindow = Duration.fromInputUnsafe(options.groupWindow ?? defaults.groupWindow)
  const maxGroupBatches = options.maxGroupBatches ?? defaults.maxGroupBatches

  /**
   * The sector rows of a group: fence (epoch), replay guard (persisted_seq < to) and watermark in one `UPDATE`,
   * returning the sectors it applies to. `= ANY` lets it find the rows through the primary key: a join alone makes
   * the planner scan every sector.
   */
  const sectorRows = (batches: ReadonlyArray<Batch.Batch>) => {
    const ids = int8s(batches.map((b) => b.sectorId))
    return sql`UPDATE sectors AS s SET persisted_seq = v.to_seq, persisted_at = now()
      FROM unnest(${ids}::bigint[], ${int8s(batches.map((b) => b.epoch))}::bigint[],
                  ${int8s(batches.map((b) => b.toSeq))}::bigint[]) AS v(sector_id, epoch, to_seq)
      WHERE s.sector_id = ANY(${ids}::bigint[]) AND s.sector_id = v.sector_id AND s.epoch = v.epoch
        AND s.persisted_seq < v.to_seq
      RETURNING s.sector_id`
  }

  /**
   * The upserts of a group's components and authority, each one statement over its column arrays; a row changes
   * only for a higher seq. `where` filters the unnested rows (`u`): nothing in a transaction that already left out
   * the sectors not applied, `onlyApplied` inside `writeUpserts`' single statement.
   */
  const upsertComponents = (c: Columns["components"], where: Statement.Fragment) =>
    sql`INSERT INTO entity_components AS t (sector_id, entity_id, component, data, seq)
      SELECT u.* FROM unnest(${int8s(c.sector)}::bigint[], ${int8s(c.entity)}::bigint[], ${texts(c.component)}::text[],
                             ${jsonbs(c.data)}::jsonb[], ${int8s(c.seq)}::bigint[])
        AS u(sector_id, entity_id, component, data, seq)
      ${where}
      ON CONFLICT (sector_id, entity_id, component)
      DO UPDATE SET data = EXCLUDED.data, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq`

  const upsertAuthority = (a: Columns["authority"], where: Statement.Fragment) =>
    sql`INSERT INTO entity_authority AS t (sector_id, entity_id, component, worker, seq)
      SELECT u.* FROM unnest(${int8s(a.sector)}::bigint[], ${int8s(a.entity)}::bigint[], ${texts(a.component)}::text[],
                             ${texts(a.worker)}::text[], ${int8s(a.seq)}::bigint[])
        AS u(sector_id, entity_id, component, worker, seq)
      ${where}
      ON CONFLICT (sector_id, entity_id, component)
      DO UPDATE SET worker = EXCLUDED.worker, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq`

  /** Within `writeUpserts`' statement: only the rows of sectors its sector-row CTE `s` updated. */
  const onlyApplied = sql`WHERE u.sector_id IN (SELECT sector_id FROM s)`

  /** Each sector's outcome: the ones the sector statement updated are applied; the others replays or fenced. */
  const classify = Effect.fnUntraced(function*(
    batches: ReadonlyArray<Batch.Batch>,
    applied: ReadonlyArray<{ readonly sector_id: bigint }>
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
    return outcomes
  })

  /** The statements of a group, in the current transaction; returns each sector's outcome. */
  const writeGroup = Effect.fnUntraced(function*(batches: ReadonlyArray<Batch.Batch>, all: Columns) {
    const applied = yield* sql<{ sector_id: bigint }>`${sectorRows(batches)}`
    const outcomes = yield* classify(batches, applied)

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
    if (components.sector.length > 0) yield* upsertComponents(components, sql.literal(""))
    if (authority.sector.length > 0) yield* upsertAuthority(authority, sql.literal(""))
    return outcomes
  })

  /**
   * The common case in one statement, so in one round trip and without BEGIN/COMMIT: the sector rows (fence,
   * replay guard, watermark) and both upserts as data-modifying CTEs; rows of sectors the first CTE did not update
   * are filtered out. Returns each sector's outcome.
   */
  const writeUpserts = Effect.fnUntraced(function*(batches: ReadonlyArray<Batch.Batch>, all: Columns) {
    const { authority: a, components: c } = all
    const applied = yield* sql<{ sector_id: bigint }>`
      WITH s AS (${sectorRows(batches)}),
        components AS (${upsertComponents(c, onlyApplied)}),
        authority AS (${upsertAuthority(a, onlyApplied)})
      SELECT sector_id FROM s`
    return yield* classify(batches, applied)
  })

  /**
   * One transaction for `batches` (of distinct sectors): their entries split into columns once; when nothing is
   * deleted or removed (only writes), `writeUpserts`' single statement does it all.
   */
  const commit = (batches: ReadonlyArray<Batch.Batch>) =>
    Effect.suspend(() => {
      const all = columnsOf(batches, () => true)
      const writesOnly = all.tombstones.sector.length === 0 && all.removed.sector.length === 0 &&
        all.cleared.sector.length === 0
      return recoverConnectionLoss(
        writesOnly ? writeUpserts(batches, all) : sql.withTransaction(writeGroup(batches, all))
      )
    }).pipe(
      Effect.mapError((error) => toSinkError(error, "persist")),
      Effect.tap(() => {
        transactions.updateUnsafe(1, context)
        groupSize.updateUnsafe(batches.length, context)
        return Effect.void
      })
    )

  const fenced = (batch: Batch.Batch) =>
    new Errors.SinkError({
      reason: "Fenced",
      message: `sector ${batch.sectorId}: claimed by another owner since epoch ${batch.epoch}`
    })

  /** A group's commit for `GroupCommit`: each batch answered by its outcome, a fenced one with its own error. */
  const commitBatches = (batches: ReadonlyArray<Batch.Batch>) =>
    Effect.map(commit(batches), (outcomes) =>
      batches.map((batch) => outcomes.get(batch.sectorId) === "fenced" ? Exit.fail(fenced(batch)) : Exit.void))

  const groups = yield* GroupCommit.make({
    commit: commitBatches,
    rows: (batch: Batch.Batch) => batch.entries.length,
    key: (batch: Batch.Batch) => batch.sectorId,
    fallback: (error: Errors.SinkError) => error.reason !== "Transient",
    onFallback: () => fallbacks.updateUnsafe(1, context),
    writers,
    maxGroupRows,
    maxGroupItems: maxGroupBatches,
    groupWindow
  })

  const persist = groups.submit

  /** Runs the batch's statements and rolls them back: fails exactly as `persist` would, changes nothing. */
  const verify = (batch: Batch.Batch): Effect.Effect<void, Errors.SinkError> =>
    recoverConnectionLoss(
      sql.withTransaction(
        Effect.flatMap(
          writeGroup([batch], columnsOf([batch], () => true)),
          (outcomes): Effect.Effect<never, Errors.SinkError | Rollback> =>
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

  const load = (sectorId: number) =>
    Effect.gen(function*() {
      const claimed = yield* sql<{ epoch: bigint; persisted_seq: bigint; persisted_at: number | null }>`
        INSERT INTO sectors (sector_id, epoch) VALUES (${BigInt(sectorId)}, 1)
        ON CONFLICT (sector_id) DO UPDATE SET epoch = sectors.epoch + 1
        RETURNING epoch, persisted_seq, (extract(epoch FROM persisted_at) * 1000)::float8 AS persisted_at`
      const components = yield* sql<{ entity_id: bigint; component: string; data: Record<string, never>; seq: bigint }>`
        SELECT entity_id, component, data, seq FROM entity_components WHERE sector_id = ${BigInt(sectorId)}`
      const authority = yield* sql<{ entity_id: bigint; component: string; worker: string; seq: bigint }>`
        SELECT entity_id, component, worker, seq FROM entity_authority WHERE sector_id = ${BigInt(sectorId)}`
      const row = claimed[0]!
      return {
        sectorId,
        epoch: Number(row.epoch),
        persistedSeq: Number(row.persisted_seq),
        persistedAt: row.persisted_at === null ? undefined : Math.round(row.persisted_at),
        rows: {
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
        }
      } satisfies SectorSink.LoadedSector
    }).pipe(Effect.mapError((error) => toSinkError(error, `load sector ${sectorId}`)))

  const deadLetter = (letters: ReadonlyArray<SectorSink.DeadLetter>) =>
    letters.length === 0 ? Effect.void : sql`
      INSERT INTO dead_letters (sector_id, seq, entry, error, code, at)
      SELECT sector_id, seq, entry, error, code, to_timestamp(at / 1000.0)
      FROM unnest(${int8s(letters.map((l) => l.sectorId))}::bigint[], ${int8s(letters.map((l) => l.seq))}::bigint[],
                  ${jsonbs(letters.map((l) => l.entry))}::jsonb[], ${texts(letters.map((l) => l.error))}::text[],
                  ${texts(letters.map((l) => l.code ?? ""))}::text[], ${param(PgTypes.array(letters.map((l) => l.at), PgTypes.OID.float8))}::float8[])
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

  return SectorSink.SectorSink.of({ load, persist, verify, deadLetter, deadLetters })
})

/** The sink on the `SqlClient` in context (migrations already run). */
export const layerNoDeps = (options?: Options): Layer.Layer<SectorSink.SectorSink, never, SqlClient.SqlClient> =>
  Layer.effect(SectorSink.SectorSink, make(options))

/** Pool and timeouts of the client `layerClient` builds. */
export interface ClientOptions {
  /** Pool size. Defaults to `10`. */
  readonly maxConnections?: number | undefined
  /** `statement_timeout` of every session. Defaults to 30 seconds. */
  readonly statementTimeout?: Duration.Input | undefined
  /** Connect timeout. Defaults to 5 seconds. */
  readonly connectTimeout?: Duration.Input | undefined
  /** `application_name`. Defaults to `sectors`. */
  readonly applicationName?: string | undefined
}

/**
 * A pooled client on `url`, probed (`SELECT 1`, so a wrong URL fails start-up instead of the first write) and
 * migrated. Provides `SqlClient` and `PgClient`. Its sessions plan with hash and merge joins off (see below).
 */
export const layerClient = (
  url: Redacted.Redacted<string>,
  options: ClientOptions = {}
): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, SqlError.SqlError | Migrator.MigrationError> =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`SELECT 1`
      yield* Migrations.run
    })
  ).pipe(
    Layer.provideMerge(PgClient.layer({
      url,
      maxConnections: options.maxConnections ?? 10,
      connectTimeout: options.connectTimeout ?? Duration.seconds(5),
      applicationName: options.applicationName ?? "sectors",
      startupParameters: {
        statement_timeout: String(Duration.toMillis(Duration.fromInputUnsafe(options.statementTimeout ?? "30 seconds"))),
        idle_in_transaction_session_timeout: "60000",
        // every statement of the sink probes the primary key once per input row; on a young table with stale
        // statistics the planner chose a hash join over a full scan instead (measured: 3 ms per delete at 15 000
        // rows, a fifth of the database time). Nested loops over the index are right at any size.
        enable_hashjoin: "off",
        enable_mergejoin: "off"
      }
    }))
  )

/** The sink on its own client: `layerClient(url, client)` then `layerNoDeps(options)`. */
export const layer = (
  url: Redacted.Redacted<string>,
  options: Options & { readonly client?: ClientOptions | undefined } = {}
): Layer.Layer<
  SectorSink.SectorSink | SqlClient.SqlClient | PgClient.PgClient,
  SqlError.SqlError | Migrator.MigrationError
> =>
  layerNoDeps(options).pipe(Layer.provideMerge(layerClient(url, options.client)))
