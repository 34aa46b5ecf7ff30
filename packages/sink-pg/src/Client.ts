/**
 * The PostgreSQL client the sink runs on: a pool from @effect/sql-pg with the sink's session settings, probed at
 * start-up (so that a wrong URL fails there instead of at the first write) and migrated (`Migrations`). `SinkPg.layer`
 * builds one; an embedder that wants the client for its own use too builds it here and gives it to
 * `SinkPg.layerNoDeps`.
 */
import { PgClient } from "@effect/sql-pg"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"
import * as Migrations from "./Migrations.ts"

/** Pool and timeouts of the client. Every field is optional. */
export interface Options {
  /** Pool size. Defaults to `10`. */
  readonly maxConnections?: number | undefined
  /** `statement_timeout` of every session. Defaults to 30 seconds. */
  readonly statementTimeout?: Duration.Input | undefined
  /** Connect timeout. Defaults to 5 seconds. */
  readonly connectTimeout?: Duration.Input | undefined
  /** `application_name`. Defaults to `sectors`. */
  readonly applicationName?: string | undefined
}

/** Fails start-up on a server that does not answer, then runs the migrations. */
const probeAndMigrate = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`SELECT 1`
  yield* Migrations.run
})

/**
 * A pooled client on `url`, probed (`SELECT 1`) and migrated. Provides `SqlClient` and `PgClient`. Its sessions
 * plan with hash and merge joins off (see below).
 */
export const layer = (
  url: Redacted.Redacted<string>,
  options: Options = {}
): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, SqlError.SqlError | Migrator.MigrationError> =>
  Layer.effectDiscard(probeAndMigrate).pipe(
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
