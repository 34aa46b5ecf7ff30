/**
 * What the sector-row write costs — the field report's "timestamp update", 8 % of database time there. Here the
 * sector row (watermark, fence and replay guard in one `UPDATE`) is written inside the batch's own statement, so
 * `pg_stat_statements` cannot separate it; this measures its marginal cost instead: the same group statement with
 * and without the sector-row CTE, interleaved, for groups of 50 sectors with 1, 5, 25 and 100 rows per sector
 * batch, on rows that exist already (the steady state: upserts update). Each statement is timed inside a
 * transaction that is rolled back, so the commit's fsync (the same for both) does not drown the difference and
 * every round sees the same table. The share is (with − without) / with, medians of the rounds.
 */
import { PgClient } from "@effect/sql-pg"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Migrations } from "@sectors/sink-pg"
import { Effect, Logger, Redacted } from "effect"
import postgres from "postgres"
import * as Summary from "./Summary.ts"

/** The share at one batch size. */
export interface Point {
  readonly rowsPerSectorBatch: number
  readonly withMillis: number
  readonly withoutMillis: number
  /** Fraction (0–1) of the statement's time spent on the sector rows. */
  readonly share: number
}

const SECTORS = 50

class Elapsed {
  readonly millis: number
  constructor(millis: number) {
    this.millis = millis
  }
}

/** Measures the marginal cost on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, rounds: number) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_sector_row")
    yield* Migrations.run.pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1 })))
    return yield* Effect.promise(async () => {
      const sql = postgres(Redacted.value(url), { max: 1, onnotice: () => {} })
      const sectors = Array.from({ length: SECTORS }, (_, i) => i)
      await sql`INSERT INTO sectors (sector_id, epoch) SELECT unnest(${sectors}::bigint[]), 1`
      await sql`INSERT INTO entity_components (sector_id, entity_id, component, data, seq)
        SELECT s, e, 'position', '{}'::jsonb, 0 FROM generate_series(0, ${SECTORS - 1}) s, generate_series(0, 99) e`
      let seq = 0
      const columns = (rows: number) => {
        const s: Array<number> = [], e: Array<number> = [], d: Array<string> = [], q: Array<number> = []
        for (const sector of sectors) {
          for (let i = 0; i < rows; i++) {
            s.push(sector), e.push(i), d.push(JSON.stringify({ x: seq, y: i })), q.push(++seq)
          }
        }
        return { s, e, d, q, to: sectors.map(() => seq) }
      }
      /** Times one statement inside a transaction that is rolled back. */
      const timed = (statement: (tx: postgres.TransactionSql) => Promise<unknown>) =>
        sql.begin(async (tx) => {
          const start = performance.now()
          await statement(tx)
          throw new Elapsed(performance.now() - start)
        }).then(() => Number.NaN, (error: unknown) => error instanceof Elapsed ? error.millis : Promise.reject(error))
      const withSector = (rows: number) => {
        const c = columns(rows)
        return timed((sql) => sql`WITH s AS (
            UPDATE sectors AS s SET persisted_seq = v.to_seq, persisted_at = now()
            FROM unnest(${sectors}::bigint[], ${sectors.map(() => 1)}::bigint[], ${c.to}::bigint[]) AS v(sector_id, epoch, to_seq)
            WHERE s.sector_id = v.sector_id AND s.epoch = v.epoch AND s.persisted_seq < v.to_seq
            RETURNING s.sector_id
          ), components AS (
            INSERT INTO entity_components AS t (sector_id, entity_id, component, data, seq)
            SELECT u.* FROM unnest(${c.s}::bigint[], ${c.e}::bigint[], ${c.s.map(() => "position")}::text[],
                                   ${c.d}::text[]::jsonb[], ${c.q}::bigint[]) AS u(sector_id, entity_id, component, data, seq)
            WHERE u.sector_id IN (SELECT sector_id FROM s)
            ON CONFLICT (sector_id, entity_id, component)
            DO UPDATE SET data = EXCLUDED.data, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq
          ) SELECT sector_id FROM s`)
      }
      const withoutSector = (rows: number) => {
        const c = columns(rows)
        return timed((sql) => sql`WITH components AS (
            INSERT INTO entity_components AS t (sector_id, entity_id, component, data, seq)
            SELECT u.* FROM unnest(${c.s}::bigint[], ${c.e}::bigint[], ${c.s.map(() => "position")}::text[],
                                   ${c.d}::text[]::jsonb[], ${c.q}::bigint[]) AS u(sector_id, entity_id, component, data, seq)
            ON CONFLICT (sector_id, entity_id, component)
            DO UPDATE SET data = EXCLUDED.data, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq
          ) SELECT 1`)
      }
      const points: Array<Point> = []
      for (const rows of [1, 5, 25, 100]) {
        const a: Array<number> = []
        const b: Array<number> = []
        for (let i = 0; i < 5; i++) await withSector(rows), await withoutSector(rows) // warm-up
        for (let i = 0; i < rounds; i++) {
          a.push(await withSector(rows))
          b.push(await withoutSector(rows))
        }
        const withMillis = Summary.summarize(a).p50
        const withoutMillis = Summary.summarize(b).p50
        points.push({ rowsPerSectorBatch: rows, withMillis, withoutMillis, share: Math.max(0, (withMillis - withoutMillis) / withMillis) })
      }
      await sql.end()
      return points
    })
  }).pipe(Effect.scoped, Effect.provide(Logger.layer([])))

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
