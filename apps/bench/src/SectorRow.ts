/**
 * What the sector-row write costs — the field report's "timestamp update", 8 % of database time there. Here the
 * fence and watermark are part of the batch's own statement, so `pg_stat_statements` cannot separate them. Two ways
 * to measure it, on a fresh database with 10 000 sectors and rows that exist already (the steady state: upserts
 * update):
 *
 * - `run`, by the server's own account: the sink's group statement (`Statements.upsertGroup`, the one the sink
 *   sends for a group that only upserts) under `EXPLAIN (ANALYZE, FORMAT JSON)`, inside a transaction that is rolled
 *   back; the time of the fence's node against the statement's execution time, median of the rounds. Shapes: 50
 *   sectors with 1, 5, 25 and 100 rows per sector batch, and one sector with 9 (the Net Result's shape). Two cases:
 *   `steady` — every sector vouched for by the claim fence (no claim since the sink last checked them): the lean
 *   statement, whose fence is the CTE `f` (slot locks and sequence read) — and `afterClaim` — none vouched for, every
 *   sector row updated (the first batch of each sector after any claim), whose fence is the CTE `s` (the sector-row
 *   `UPDATE`s, which read `f` first).
 * - `marginal`, by difference: the lean statement, the same upserts with no fence at all
 *   (`Statements.unfencedUpsertGroup`) and the after-a-claim statement, committed in turn, many rounds; the mean
 *   execution time of each from `pg_stat_statements`; the fence's share is (with − without) / with. This counts what
 *   `EXPLAIN` leaves out (the one-time filters, the CTE plumbing) and nothing of `EXPLAIN`'s own overhead. Means
 *   suffer from a loaded machine's long tails (a backend descheduled mid-statement), so the calls are also timed by
 *   the client: the difference of the medians (round trip included on both sides) over the statement's mean.
 */
import { PgClient } from "@effect/sql-pg"
import type { Batch } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Migrations, Statements, Stats } from "@sectors/sink-pg"
import { Summary } from "@sectors/workloads"
import { Effect, Logger, type Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as DatabaseTime from "./DatabaseTime.ts"

/** The share at one shape. */
export interface Point {
  /** Sectors per group statement. */
  readonly sectors: number
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

/** The marginal cost at one shape: mean execution times (`pg_stat_statements`) of statements committed in turn. */
export interface Marginal {
  readonly sectors: number
  readonly rowsPerSectorBatch: number
  readonly rounds: number
  /** The lean statement (steady state: the fence's locks and sequence read, no sector row). */
  readonly withMillis: number
  /** The same upserts with no fence. */
  readonly withoutMillis: number
  /** The statement after a claim (every sector row updated). */
  readonly afterClaimMillis: number
  /** (with − without) / with. */
  readonly share: number
  /** (after a claim − without) / after a claim: what the sector row costs when it is written. */
  readonly afterClaimShare: number
  /** Medians of the same calls timed by the client (round trip included), robust to a loaded machine's long tails. */
  readonly clientMillis: { readonly with: number; readonly without: number; readonly afterClaim: number }
  /** (median with − median without, client) / the lean statement's mean execution time. */
  readonly clientShare: number
}

/** The shapes measured: sectors per statement and rows per sector batch. */
export const shapes: ReadonlyArray<readonly [sectors: number, rows: number]> = [[50, 1], [50, 5], [50, 25], [50, 100], [1, 9]]

/** Sectors with rows, from 0. */
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

/** Groups to write: every batch's seqs above the last one's. */
interface Groups {
  /** One batch for each of the first `sectors` sectors of `rows` upserts each, every seq above the last one's. */
  readonly batches: (sectors: number, rows: number) => ReadonlyArray<Batch.Batch>
  /** The fence vouching for every sector (no claim since). */
  readonly vouched: (batches: ReadonlyArray<Batch.Batch>) => { sectors: ReadonlySet<number>; claims: number }
}

/** A host's worth of sectors (10 000) and rows for the first 50; makes the groups that write them. */
const seed = Effect.gen(function*() {
  yield* Migrations.run
  const sql = yield* SqlClient.SqlClient
  // a host's worth of sectors in the table; each statement writes up to 50 of them
  yield* sql`INSERT INTO sectors (sector_id, epoch) SELECT g, 1 FROM generate_series(0, 9999) g`
  yield* sql`INSERT INTO entity_components (sector_id, entity_id, component, data, seq)
    SELECT s, e, 'position', '{}'::jsonb, 0 FROM generate_series(0, ${SECTORS - 1}::int) s, generate_series(0, 99) e`
  const claims = Number((yield* sql<{ claims: bigint }>`SELECT pg_sequence_last_value('sector_claims') AS claims`)[0]!.claims)
  let seq = 0
  const batches = (sectors: number, rows: number): ReadonlyArray<Batch.Batch> =>
    Array.from({ length: sectors }, (_, sector) => {
      const fromSeq = seq + 1
      const entries = Array.from({ length: rows }, (_, i): Batch.Entry => {
        seq++
        return { _tag: "Upsert", entity: i, component: "position", data: { x: seq, y: i }, seq }
      })
      return { sectorId: sector, epoch: 1, fromSeq, toSeq: seq, ops: rows, entries, trigger: "manual" }
    })
  return {
    batches,
    vouched: (group) => ({ sectors: new Set(group.map((b) => b.sectorId)), claims })
  } satisfies Groups
})

/** A fresh database of the server at `serverUrl` with a host's worth of sectors (`seed`), and groups to write on it. */
const onFreshDatabase = <A, E>(
  serverUrl: Redacted.Redacted<string>,
  body: (groups: Groups) => Effect.Effect<A, E, SqlClient.SqlClient>
) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_sector_row")
    return yield* Effect.flatMap(seed, body).pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1 })))
  }).pipe(Effect.scoped, Effect.provide(Logger.layer([])))

/** Measures the fence's part by `EXPLAIN ANALYZE` on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, rounds: number) =>
  onFreshDatabase(serverUrl, ({ batches, vouched }) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      /**
       * Runs the group statement under EXPLAIN ANALYZE in a rolled-back transaction: [fence, total] ms. The fence is
       * the node of CTE `f` in the lean statement (the slot locks and the sequence read) and of CTE `s` after a claim
       * (the sector-row updates, whose one-time filter reads `f`, and the list of sectors let through).
       */
      const measure = (sectors: number, rows: number, steady: boolean) =>
        sql.withTransaction(Effect.gen(function*() {
          const group = batches(sectors, rows)
          const statement = Statements.upsertGroup(sql, group, steady ? vouched(group) : undefined)
          const [row] = yield* sql`EXPLAIN (ANALYZE, FORMAT JSON) ${statement}`
          const plan = (Object.values(row!)[0] as Array<{ Plan: PlanNode; "Execution Time": number }>)[0]!
          const node = steady ? "CTE f" : "CTE s"
          const fence = plan.Plan.Plans?.find((n) => n["Subplan Name"] === node)?.["Actual Total Time"] ?? Number.NaN
          return yield* Effect.fail(new Elapsed([fence, plan["Execution Time"]]))
        })).pipe(
          Effect.catch((error) => error instanceof Elapsed ? Effect.succeed(error.millis) : Effect.fail(error))
        )
      const medians = (sectors: number, rows: number, steady: boolean) =>
        Effect.gen(function*() {
          const fence: Array<number> = []
          const total: Array<number> = []
          for (let i = 0; i < 5; i++) yield* measure(sectors, rows, steady) // warm-up
          for (let i = 0; i < rounds; i++) {
            const [a, b] = yield* measure(sectors, rows, steady)
            fence.push(a)
            total.push(b)
          }
          return { fence: Summary.summarize(fence).p50, total: Summary.summarize(total).p50 }
        })
      const points: Array<Point> = []
      for (const [sectors, rows] of shapes) {
        const steady = yield* medians(sectors, rows, true)
        const afterClaim = yield* medians(sectors, rows, false)
        points.push({
          sectors,
          rowsPerSectorBatch: rows,
          withMillis: steady.total,
          withoutMillis: steady.total - steady.fence,
          share: steady.fence / steady.total,
          afterClaimShare: afterClaim.fence / afterClaim.total,
          afterClaimMillis: afterClaim.total
        })
      }
      return points
    }))

/**
 * Measures the fence's part by difference (`pg_stat_statements`): of each statement `rounds` rounds at 50 sectors ×
 * 5 rows, as many rows' worth at the other shapes (at least 20 rounds).
 */
export const marginal = (serverUrl: Redacted.Redacted<string>, rounds: number) =>
  onFreshDatabase(serverUrl, ({ batches, vouched }) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const results: Array<Marginal> = []
      for (const [sectors, rows] of shapes) {
        const lean = (group: ReadonlyArray<Batch.Batch>) => Statements.upsertGroup(sql, group, vouched(group))
        const kinds = [
          ["with", lean],
          ["without", (group: ReadonlyArray<Batch.Batch>) => Statements.unfencedUpsertGroup(sql, group)],
          ["afterClaim", (group: ReadonlyArray<Batch.Batch>) => Statements.upsertGroup(sql, group)]
        ] as const
        for (let i = 0; i < 20; i++) for (const [, statement] of kinds) yield* statement(batches(sectors, rows)) // warm-up
        // the same amount of work for every shape: more rounds of small statements, fewer of large ones
        const times = Math.max(20, Math.round(rounds * 250 / Math.max(50, sectors * rows)))
        const before = yield* Stats.snapshot
        // in turn, each round starting with the next kind, so that drift in the machine's load and what one statement
        // leaves in the caches fall on all three alike
        const elapsed: Array<Array<number>> = kinds.map(() => [])
        for (let i = 0; i < times; i++) {
          for (let k = 0; k < kinds.length; k++) {
            const kind = (i + k) % kinds.length
            const statement = kinds[kind]![1](batches(sectors, rows))
            const sent = performance.now()
            yield* statement
            elapsed[kind]!.push(performance.now() - sent)
          }
        }
        const [withMedian, withoutMedian, afterClaimMedian] = elapsed.map((ms) => Summary.summarize(ms).p50)
        const delta = Stats.diff(before, yield* Stats.snapshot)
        const mean = (pattern: RegExp) => {
          const found = delta.statements.filter((st) => pattern.test(st.query))
          const calls = found.reduce((n, st) => n + st.calls, 0)
          return calls === 0 ? Number.NaN : found.reduce((n, st) => n + st.totalMs, 0) / calls
        }
        const withMillis = mean(leanStatement)
        const withoutMillis = mean(/^\s*WITH components AS \(/)
        const afterClaimMillis = mean(/^\s*WITH f AS MATERIALIZED[\s\S]*UPDATE sectors/)
        results.push({
          sectors,
          rowsPerSectorBatch: rows,
          rounds: times,
          withMillis,
          withoutMillis,
          afterClaimMillis,
          share: (withMillis - withoutMillis) / withMillis,
          afterClaimShare: (afterClaimMillis - withoutMillis) / afterClaimMillis,
          clientMillis: { with: withMedian!, without: withoutMedian!, afterClaim: afterClaimMedian! },
          clientShare: (withMedian! - withoutMedian!) / withMillis
        })
      }
      return results
    }))

/** What a committed lean statement costs the database at one shape, its commit included. */
export interface Committed {
  readonly sectors: number
  readonly rowsPerSectorBatch: number
  readonly statements: number
  /** The database's `active_time` per statement (`DatabaseTime`): execution, commit (WAL flush) and protocol. */
  readonly databaseMillis: number
}

/**
 * The database's time per committed lean statement at each shape: `statements` of them committed one by one, each
 * shape on a client of its own, with nothing else connected to the database, and its `active_time` read before and
 * after (`DatabaseTime`). `EXPLAIN ANALYZE` (`run`) times the fence inside a statement but no commit; this is the
 * whole a sector batch costs the database, which the fence's time is a share of.
 */
export const committed = (serverUrl: Redacted.Redacted<string>, statements: number) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_sector_row_db")
    const database = DatabaseTime.databaseOf(url)
    const client = PgClient.layer({ url, maxConnections: 1, applicationName: "bench-sector-row" })
    const groups = yield* seed.pipe(Effect.provide(client), Effect.scoped)
    const results: Array<Committed> = []
    for (const [sectors, rows] of shapes) {
      const before = yield* DatabaseTime.activeMillis(serverUrl, database)
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        for (let i = 0; i < statements; i++) {
          const group = groups.batches(sectors, rows)
          yield* Statements.upsertGroup(sql, group, groups.vouched(group))
        }
      }).pipe(Effect.provide(client), Effect.scoped)
      const after = yield* DatabaseTime.activeMillis(serverUrl, database)
      results.push({ sectors, rowsPerSectorBatch: rows, statements, databaseMillis: (after - before) / statements })
    }
    return results
  }).pipe(Effect.scoped, Effect.provide(Logger.layer([])))

/** The lean statement of a group the fence wholly vouches for (no sector row). */
export const leanStatement = /^\s*WITH f AS MATERIALIZED \((?![\s\S]*UPDATE sectors)[\s\S]*SELECT claims FROM f\s*$/

/** The statement of a group that also deletes: its first statement is the fence alone (`pg_stat_statements`). */
export const fenceStatement = /^\s*WITH f AS MATERIALIZED \(\s*SELECT pg_sequence_last_value(?![\s\S]*INSERT INTO entity_components)/

/** The single statement of an upsert-only group: the fence is part of it (`shareAt` says how much). */
export const groupStatement = /^\s*WITH f AS MATERIALIZED \(\s*SELECT pg_sequence_last_value[\s\S]*INSERT INTO entity_components/

/**
 * The share for a given mean rows per sector batch in statements of `sectors` sectors (default 50), interpolated
 * between the points measured at that many sectors.
 */
export const shareAt = (
  points: ReadonlyArray<Point>,
  rows: number,
  sectors = SECTORS,
  share: (point: Point) => number = (p) => p.share
): number => {
  const sorted = points.filter((p) => (p.sectors ?? SECTORS) === sectors && Number.isFinite(share(p)))
    .sort((a, b) => a.rowsPerSectorBatch - b.rowsPerSectorBatch)
  if (sorted.length === 0) return Number.NaN
  if (rows <= sorted[0]!.rowsPerSectorBatch) return share(sorted[0]!)
  for (let i = 1; i < sorted.length; i++) {
    const lo = sorted[i - 1]!, hi = sorted[i]!
    if (rows <= hi.rowsPerSectorBatch) {
      const f = (Math.log(rows) - Math.log(lo.rowsPerSectorBatch)) / (Math.log(hi.rowsPerSectorBatch) - Math.log(lo.rowsPerSectorBatch))
      return share(lo) + f * (share(hi) - share(lo))
    }
  }
  return share(sorted.at(-1)!)
}

/**
 * The fence's time (`EXPLAIN ANALYZE`, steady state) over the database's time for the whole committed statement
 * (`committed`) at the point's shape — the share of database time — or NaN where that shape was not measured.
 */
export const databaseShare = (committed: ReadonlyArray<Committed>) => (point: Point): number => {
  const c = committed.find((c) => c.sectors === (point.sectors ?? SECTORS) && c.rowsPerSectorBatch === point.rowsPerSectorBatch)
  return c === undefined ? Number.NaN : (point.withMillis - point.withoutMillis) / c.databaseMillis
}
