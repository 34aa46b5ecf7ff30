/**
 * `SectorSink` on PostgreSQL through @effect/sql-pg: the sink's options, metrics and layers, composed of
 * `Statements` (the SQL of a commit, verify, load and dead letters), `GroupCommit` (batches of different sectors
 * waiting at the same moment share one transaction) and `Client` (the pooled, probed and migrated client).
 *
 * **Group commit**, keyed by sector and sized in entries: a group stops taking batches at `maxGroupRows` rows or
 * `maxGroupBatches` batches; `writers` such transactions run at once. Each sector is still answered on its own: a
 * fenced sector fails alone, a replayed one succeeds as a no-op. If a group fails for anything but a transient error
 * (its data, most often), every batch of it is retried in a transaction of its own, so that the failure reaches only
 * the sector at fault (whose runtime then bisects to the poison op).
 */
import type { PgClient } from "@effect/sql-pg"
import { type Batch, type Errors, SectorSink } from "@sectors/core"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Migrator from "effect/sql/Migrator"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"
import * as Tracer from "effect/Tracer"
import * as Client from "./Client.ts"
import * as GroupCommit from "./GroupCommit.ts"
import * as Statements from "./Statements.ts"

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

/** A batch waiting for a group, with the span persisting it, if any (the group's span links to it). */
interface Queued {
  readonly batch: Batch.Batch
  readonly span: Tracer.AnySpan | undefined
}

/** Builds the sink on the `SqlClient` in context; starts its writers in the current scope. */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const statements = yield* Statements.make()
  const context = yield* Effect.context<never>()
  // every series from zero (reading one registers it), so that `rate()` has a series before the first commit
  for (const metric of [transactions, groupSize, fallbacks]) metric.valueUnsafe(context)

  /**
   * A group's commit for `GroupCommit`: each batch answered by its outcome, a fenced one with its own error. Traced
   * as `SinkPg.commit` (one span per transaction; its SQL statements are its children), linked to the span that
   * persists each of its batches (`Sector.persist`).
   */
  const commit = (group: ReadonlyArray<Queued>) => {
    const batches = group.map((queued) => queued.batch)
    return statements.commit(batches).pipe(
      Effect.map((outcomes) => {
        transactions.updateUnsafe(1, context)
        groupSize.updateUnsafe(batches.length, context)
        return batches.map((batch) =>
          outcomes.get(batch.sectorId) === "fenced" ? Exit.fail(Statements.fenced(batch)) : Exit.void
        )
      }),
      Effect.onExit((exit) =>
        Effect.annotateCurrentSpan({
          outcome: Exit.isSuccess(exit) ? "success" : Option.getOrElse(
            Option.map(Cause.findErrorOption(exit.cause), (error) => error.reason),
            () => Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "defect"
          ),
          "pg.group.fenced": Exit.isSuccess(exit) ? exit.value.filter(Exit.isFailure).length : 0
        })
      ),
      Effect.withSpan("SinkPg.commit", {
        attributes: {
          "sector.ids": batches.map((batch) => batch.sectorId),
          "pg.group.batches": batches.length,
          "pg.group.ops": batches.reduce((sum, batch) => sum + batch.ops, 0),
          "pg.group.rows": batches.reduce((sum, batch) => sum + batch.entries.length, 0)
        },
        links: group.flatMap((queued) => queued.span === undefined ? [] : [{ span: queued.span, attributes: {} }])
      }, { captureStackTrace: false }) // one per transaction, in a writer fiber: no call site worth a stack
    )
  }

  const groups = yield* GroupCommit.make({
    commit,
    rows: (queued: Queued) => queued.batch.entries.length,
    key: (queued: Queued) => queued.batch.sectorId,
    fallback: (error: Errors.SinkError) => error.reason !== "Transient",
    onFallback: () => fallbacks.updateUnsafe(1, context),
    writers: options.writers ?? defaults.writers,
    maxGroupRows: options.maxGroupRows ?? defaults.maxGroupRows,
    maxGroupItems: options.maxGroupBatches ?? defaults.maxGroupBatches,
    groupWindow: options.groupWindow ?? defaults.groupWindow
  })

  return SectorSink.SectorSink.of({
    load: statements.load,
    read: statements.read,
    // the batch's span, when there is one: read from the context, not `Effect.currentSpan`, whose failure without a
    // span (under a tracer that records nothing, the usual case) builds an error per batch
    persist: (batch) =>
      Effect.withFiber((fiber) => groups.submit({ batch, span: Context.getOrUndefined(fiber.context, Tracer.ParentSpan) })),
    verify: statements.verify,
    deadLetter: statements.deadLetter,
    deadLetters: statements.deadLetters
  })
})

/** The sink on the `SqlClient` in context (migrations already run). */
export const layerNoDeps = (options?: Options): Layer.Layer<SectorSink.SectorSink, never, SqlClient.SqlClient> =>
  Layer.effect(SectorSink.SectorSink, make(options))

/** The sink on its own client: `Client.layer(url, client)` then `layerNoDeps(options)`. */
export const layer = (
  url: Redacted.Redacted<string>,
  options: Options & { readonly client?: Client.Options | undefined } = {}
): Layer.Layer<
  SectorSink.SectorSink | SqlClient.SqlClient | PgClient.PgClient,
  SqlError.SqlError | Migrator.MigrationError
> =>
  layerNoDeps(options).pipe(Layer.provideMerge(Client.layer(url, options.client)))
