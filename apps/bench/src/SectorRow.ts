/**
 * What the sector-row write costs — the field report's "timestamp update", 8 % of database time there. Here the
 * fence and watermark are part of the batch's own statement, so `pg_stat_statements` cannot separate them. The
 * server can: each round runs the sink's group statement (`Statements.upsertGroup`, the one the sink sends for a
 * group that only upserts) under `EXPLAIN (ANALYZE, FORMAT JSON)` — 50 sectors (of 10 000 in the table) with 1, 5, 25
 * and 100 rows per sector batch, on rows that exist already (the steady state: upserts update) — inside a
 * transaction that is rolled back, and reads the time of the fence's nodes (the advisory lock and sequence read, the
 * sector-row `UPDATE`s, the list of sectors let through) against the statement's execution time. Two cases:
 * `steady` — every sector vouched for by the claim fence (no claim since the sink last checked them: the sector rows
 * are skipped), the case of every batch but the first after a claim — and `afterClaim` — none vouched for, every
 * sector row updated as before the fence (the first batch of each sector after any claim). Medians of the rounds.
 */
import { PgClient } from "@effect/sql-pg"
import type { Batch } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Migrations, Statements } from "@sectors/sink-pg"
import { Summary } from "@sectors/workloads"
import { Effect, Logger, type Redacted } from "effect"
import { SqlClient } from "effect/sql"

/** The share at one batch size. */
export interface Point {
  readonly rowsPerSectorBatch: number
  /** The statement's execution time, steady state (sector rows skipped). */
  readonly withMillis: number
  /** Its execution time less the fence's nodes. */
  readonly withoutMillis: number
  /** Fraction (0–1) of the statement's time spent on the fence, steady state. */
  readonly share: number
  /** The same fraction when no sector is vouched for (after a claim: every sector row updated). */
  readonly afterClaimShare?: number | undefined
  /** The statement's execution time in that case. */
  readonly afterClaimMillis?: number | undefined
}

const SECTORS = 50

/** Carries the measured times out of a transaction that is rolled back. */
class Elapsed {
  readonly millis: readonly [number, number]
  constructor(millis: readonly [number, number]) {
    this.millis = millis
  }
}

interface PlanNode {
  readonly "Node Type": string
  readonly "Subplan Name"?: string
  readonly "Actual Total Time": number
  readonly Plans?: ReadonlyArray<PlanNode>
}

/** Measures the marginal cost on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, rounds: number) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_sector_row")
    return yield* Effect.gen(function*() {
      yield* Migrations.run
      const sql = yield* SqlClient.SqlClient
      const sectors = Array.from({ length: SECTORS }, (_, i) => i)
      // a host's worth of sectors in the table; each statement writes 50 of them
      yield* sql`INSERT INTO sectors (sector_id, epoch) SELECT g, 1 FROM generate_series(0, 9999) g`
      yield* sql`INSERT INTO entity_components (sector_id, entity_id, component, data, seq)
        SELECT s, e, 'position', '{}'::jsonb, 0 FROM generate_series(0, ${SECTORS - 1}::int) s, generate_series(0, 99) e`
      let seq = 0
      /** One batch per sector of `rows` upserts each, every seq above the last round's. */
      const batches = (rows: number): ReadonlyArray<Batch.Batch> => {
        const fromSeq = seq + 1
        const entries = sectors.map(() =>
          Array.from({ length: rows }, (_, i): Batch.Entry => {
            seq++
            return { _tag: "Upsert", entity: i, component: "position", data: { x: seq, y: i }, seq }
          })
        )
        return sectors.map((sector, i) => ({
          sectorId: sector,
          epoch: 1,
          fromSeq,
          toSeq: seq,
          ops: rows,
          entries: entries[i]!,
          trigger: "manual"
        }))
      }
      const claims = Number((yield* sql<{ claims: bigint }>`SELECT pg_sequence_last_value('sector_claims') AS claims`)[0]!.claims)
      const everySector: ReadonlySet<number> = new Set(sectors)
      /**
       * Runs the group statement under EXPLAIN ANALYZE in a rolled-back transaction: [fence, total] ms. The fence is
       * the lock and sequence read (`f`), the sector-row updates and the list of sectors let through: the node of CTE `s`.
       */
      const measure = (rows: number, vouched: boolean) =>
        sql.withTransaction(Effect.gen(function*() {
          const statement = Statements.upsertGroup(sql, batches(rows), vouched ? { sectors: everySector, claims } : undefined)
          const [row] = yield* sql`EXPLAIN (ANALYZE, FORMAT JSON) ${statement}`
          const plan = (Object.values(row!)[0] as Array<{ Plan: PlanNode; "Execution Time": number }>)[0]!
          // `s` reads `checked` and `rechecked`, whose quals read `f`: its node's time is all of them together
          const fence = plan.Plan.Plans?.find((node) => node["Subplan Name"] === "CTE s")?.["Actual Total Time"] ?? Number.NaN
          return yield* Effect.fail(new Elapsed([fence, plan["Execution Time"]]))
        })).pipe(
          Effect.catch((error) => error instanceof Elapsed ? Effect.succeed(error.millis) : Effect.fail(error))
        )
      const medians = (rows: number, vouched: boolean) =>
        Effect.gen(function*() {
          const fence: Array<number> = []
          const total: Array<number> = []
          for (let i = 0; i < 5; i++) yield* measure(rows, vouched) // warm-up
          for (let i = 0; i < rounds; i++) {
            const [a, b] = yield* measure(rows, vouched)
            fence.push(a)
            total.push(b)
          }
          return { fence: Summary.summarize(fence).p50, total: Summary.summarize(total).p50 }
        })
      const points: Array<Point> = []
      for (const rows of [1, 5, 25, 100]) {
        const steady = yield* medians(rows, true)
        const afterClaim = yield* medians(rows, false)
        points.push({
          rowsPerSectorBatch: rows,
          withMillis: steady.total,
          withoutMillis: steady.total - steady.fence,
          share: steady.fence / steady.total,
          afterClaimShare: afterClaim.fence / afterClaim.total,
          afterClaimMillis: afterClaim.total
        })
      }
      return points
    }).pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1 })))
  }).pipe(Effect.scoped, Effect.provide(Logger.layer([])))

/** The statement of a group that also deletes: its first statement is the fence alone (`pg_stat_statements`). */
export const fenceStatement = /^\s*WITH f AS MATERIALIZED \(\s*SELECT pg_sequence_last_value(?![\s\S]*INSERT INTO entity_components)/

/** The single statement of an upsert-only group: the fence is part of it (`shareAt` says how much). */
export const groupStatement = /^\s*WITH f AS MATERIALIZED \(\s*SELECT pg_sequence_last_value[\s\S]*INSERT INTO entity_components/

/** The share for a given mean rows per sector batch, interpolated between the measured points. */
export const shareAt = (points: ReadonlyArray<Point>, rows: number): number => {
  const sorted = [...points].sort((a, b) => a.rowsPerSectorBatch - b.rowsPerSectorBatch)
  if (sorted.length === 0) return Number.NaN
  if (rows <= sorted[0]!.rowsPerSectorBatch) return sorted[0]!.share
  for (let i = 1; i < sorted.length; i++) {
    const lo = sorted[i - 1]!, hi = sorted[i]!
    if (rows <= hi.rowsPerSectorBatch) {
      const f = (Math.log(rows) - Math.log(lo.rowsPerSectorBatch)) / (Math.log(hi.rowsPerSectorBatch) - Math.log(lo.rowsPerSectorBatch))
      return lo.share + f * (hi.share - lo.share)
    }
  }
  return sorted.at(-1)!.share
}
