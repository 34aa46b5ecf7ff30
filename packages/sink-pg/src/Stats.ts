/**
 * What the database itself says about a run, for benchmarks and operations: per-statement calls, time and rows from
 * `pg_stat_statements`, and commits, rollbacks and tuple counts from `pg_stat_database` — measured, not guessed.
 * Take a `snapshot` before and after, and `diff` them; `share` gives each statement's part of the database time
 * (the field report's "timestamp update is 8 % of DB time" is exactly that figure for the sector-row update).
 *
 * `pg_stat_statements` must be preloaded (the embedded server does it); `enable` creates the extension where it is
 * allowed and reports whether statement figures are available.
 */
import * as Effect from "effect/Effect"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"

/** One normalised statement. */
export interface StatementStat {
  readonly query: string
  readonly calls: number
  readonly totalMs: number
  readonly rows: number
}

/** Database-wide counters of the current database. */
export interface DatabaseStat {
  /**
   * Transaction ids handed out so far (server-wide): one per transaction that wrote, exact and immediate. The
   * precise way to count write transactions (commits) over an interval.
   */
  readonly xids: number
  /** `xact_commit`: every commit, reads included; backends report it at most about once a second. */
  readonly commits: number
  readonly rollbacks: number
  readonly inserted: number
  readonly updated: number
  readonly deleted: number
  readonly blocksRead: number
  readonly blocksHit: number
}

/** Both, at one moment. */
export interface Snapshot {
  /** Whether `pg_stat_statements` is available (statements is empty otherwise). */
  readonly statementsAvailable: boolean
  readonly statements: ReadonlyArray<StatementStat>
  readonly database: DatabaseStat
}

/** A statement's figures over an interval, with its share of all statement time in it. */
export interface StatementDelta extends StatementStat {
  /** Fraction (0–1) of the interval's total statement time. */
  readonly share: number
}

/** What happened between two snapshots. */
export interface Delta {
  readonly statementsAvailable: boolean
  /** By total time, largest first. */
  readonly statements: ReadonlyArray<StatementDelta>
  readonly database: DatabaseStat
}

/** Creates `pg_stat_statements` if it is preloaded and we may; true when statement figures are available. */
export const enable: Effect.Effect<boolean, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`.pipe(Effect.ignore)
  return yield* sql`SELECT 1 FROM pg_stat_statements LIMIT 1`.pipe(
    Effect.as(true),
    Effect.orElseSucceed(() => false)
  )
})

const databaseStat: Effect.Effect<DatabaseStat, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // counters are flushed by each backend at most once a second; force our own view to be fresh
  yield* sql`SELECT pg_stat_clear_snapshot()`
  const rows = yield* sql<{
    xids: number
    commits: number
    rollbacks: number
    inserted: number
    updated: number
    deleted: number
    blocks_read: number
    blocks_hit: number
  }>`SELECT pg_snapshot_xmax(pg_current_snapshot())::text::float8 AS xids, xact_commit::float8 AS commits, xact_rollback::float8 AS rollbacks, tup_inserted::float8 AS inserted,
            tup_updated::float8 AS updated, tup_deleted::float8 AS deleted, blks_read::float8 AS blocks_read,
            blks_hit::float8 AS blocks_hit
     FROM pg_stat_database WHERE datname = current_database()`
  const row = rows[0]!
  return {
    xids: row.xids,
    commits: row.commits,
    rollbacks: row.rollbacks,
    inserted: row.inserted,
    updated: row.updated,
    deleted: row.deleted,
    blocksRead: row.blocks_read,
    blocksHit: row.blocks_hit
  }
})

/** Both sets of figures now. */
export const snapshot: Effect.Effect<Snapshot, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const available = yield* enable
  const statements = available
    ? yield* sql<{ query: string; calls: number; total_ms: number; rows: number }>`
        SELECT query, calls::float8 AS calls, total_exec_time::float8 AS total_ms, rows::float8 AS rows
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`
    : []
  return {
    statementsAvailable: available,
    statements: statements.map((s) => ({ query: s.query, calls: s.calls, totalMs: s.total_ms, rows: s.rows })),
    database: yield* databaseStat
  }
})

/** The figures of the interval between two snapshots. */
export const diff = (before: Snapshot, after: Snapshot): Delta => {
  const earlier = new Map(before.statements.map((s) => [s.query, s]))
  const changed: Array<StatementStat> = []
  for (const s of after.statements) {
    const b = earlier.get(s.query)
    const calls = s.calls - (b?.calls ?? 0)
    if (calls <= 0) continue
    changed.push({ query: s.query, calls, totalMs: s.totalMs - (b?.totalMs ?? 0), rows: s.rows - (b?.rows ?? 0) })
  }
  const total = changed.reduce((sum, s) => sum + s.totalMs, 0)
  const statements = changed
    .map((s) => ({ ...s, share: total > 0 ? s.totalMs / total : 0 }))
    .sort((a, b) => b.totalMs - a.totalMs)
  const d = (key: keyof DatabaseStat) => after.database[key] - before.database[key]
  return {
    statementsAvailable: after.statementsAvailable,
    statements,
    database: {
      xids: d("xids"),
      commits: d("commits"),
      rollbacks: d("rollbacks"),
      inserted: d("inserted"),
      updated: d("updated"),
      deleted: d("deleted"),
      blocksRead: d("blocksRead"),
      blocksHit: d("blocksHit")
    }
  }
}

/** The share of statement time spent in statements whose text matches `pattern`. */
export const share = (delta: Delta, pattern: RegExp): number =>
  delta.statements.filter((s) => pattern.test(s.query)).reduce((sum, s) => sum + s.share, 0)
