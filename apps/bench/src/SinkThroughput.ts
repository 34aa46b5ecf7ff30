/**
 * Rows per second the PostgreSQL sink writes, side by side with two references on the same database in the same
 * run: the practical limit — a raw `UNNEST` upsert loop through the `postgres` driver, one statement per
 * transaction — and the naive baseline — one transaction per op (upsert plus the sector-timestamp upsert, as the
 * field report's adapter did). Each method writes rows with distinct keys (collapsing cannot help), one batch after
 * another on one connection, at batch sizes 1, 50 and 1000, on a fresh database. Rounds are interleaved and the
 * median round is reported, so that a slow moment of the machine hits every method alike.
 */
import { PgClient } from "@effect/sql-pg"
import { Batch, type Op } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Migrations, SinkPg } from "@sectors/sink-pg"
import { Summary } from "@sectors/workloads"
import { Effect, Layer, Redacted } from "effect"
import postgres from "postgres"
import * as Limit from "./Limit.ts"

/** The three writers compared. */
export type Method = "sink-pg" | "raw-unnest" | "naive-per-op"

/** One measured figure. */
export interface Figure {
  readonly method: Method
  readonly batchSize: number
  readonly rows: number
  /** Median over rounds. */
  readonly rowsPerSecond: number
  /** Every round, for the raw data. */
  readonly rounds: ReadonlyArray<number>
}

/** How much to write. */
export interface Options {
  /** Rows per method and round at batch size ≥ 50. */
  readonly rows: number
  /** Rows per round at batch size 1 and for the naive baseline. */
  readonly smallRows: number
  readonly rounds: number
  readonly batchSizes: ReadonlyArray<number>
}

export const quick: Options = { rows: 20_000, smallRows: 1_000, rounds: 3, batchSizes: [1, 50, 1000] }
export const full: Options = { rows: 100_000, smallRows: 5_000, rounds: 5, batchSizes: [1, 50, 1000] }

const position = (entity: number) => ({ x: entity % 1000, y: (entity * 7) % 1000, zone: "north" })

const setOp = (entity: number): Op.Op => ({ type: "set", entity, component: "position", data: position(entity) })

/** Batches of `size` distinct-key upserts covering `rows` rows, for a fresh sector. */
const batchesFor = (sectorId: number, epoch: number, rows: number, size: number) => {
  const batches: Array<Batch.Batch> = []
  for (let start = 0; start < rows; start += size) {
    const pending = new Batch.Pending()
    for (let i = start; i < Math.min(rows, start + size); i++) pending.add(setOp(i), i + 1, 0)
    batches.push(pending.toBatch(sectorId, epoch, "min_batch"))
  }
  return batches
}

const seconds = (start: number) => (performance.now() - start) / 1000

/** Every method at every batch size, on the migrated database at `url`. */
const measure = (url: Redacted.Redacted<string>, options: Options) =>
  Effect.gen(function*() {
    let nextSector = 0 // a fresh sector for every measurement
    const sink = yield* SinkPg.make({ writers: 1 })
    const raw = postgres(Redacted.value(url), { max: 1, onnotice: () => {} })
    yield* Effect.addFinalizer(() => Effect.promise(() => raw.end()))

    const viaSink = (size: number, rows: number) =>
      Effect.gen(function*() {
        const sectorId = nextSector++
        const { epoch } = yield* sink.load(sectorId)
        const batches = batchesFor(sectorId, epoch, rows, size)
        const start = performance.now()
        for (const batch of batches) yield* sink.persist(batch)
        return rows / seconds(start)
      })

    const viaRaw = (size: number, rows: number) =>
      Effect.promise(async () => {
        const sectorId = nextSector++
        const start = performance.now()
        for (let first = 0; first < rows; first += size) {
          const entities = Array.from({ length: Math.min(size, rows - first) }, (_, i) => first + i)
          await Limit.rawUpsert(raw, sectorId, entities, position)
        }
        return rows / seconds(start)
      })

    const viaNaive = (rows: number) =>
      Effect.promise(async () => {
        const sectorId = nextSector++
        const start = performance.now()
        for (let i = 0; i < rows; i++) {
          const data = JSON.stringify(position(i))
          await raw.begin(async (tx) => {
            await tx`INSERT INTO entity_components AS t (sector_id, entity_id, component, data, seq)
              VALUES (${sectorId}, ${i}, 'position', ${data}::jsonb, ${i + 1})
              ON CONFLICT (sector_id, entity_id, component)
              DO UPDATE SET data = EXCLUDED.data, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq`
            await tx`INSERT INTO sectors (sector_id, persisted_seq, persisted_at) VALUES (${sectorId}, ${i + 1}, now())
              ON CONFLICT (sector_id) DO UPDATE SET persisted_seq = EXCLUDED.persisted_seq, persisted_at = now()`
          })
        }
        return rows / seconds(start)
      })

    const measured: Array<{ readonly method: Method; readonly batchSize: number; readonly rows: number; readonly rounds: Array<number> }> = []
    const record = (method: Method, batchSize: number, rows: number, value: number) => {
      const figure = measured.find((f) => f.method === method && f.batchSize === batchSize)
      if (figure === undefined) measured.push({ method, batchSize, rows, rounds: [value] })
      else figure.rounds.push(value)
    }
    // warm up plans and caches once, unmeasured
    yield* viaSink(50, 500)
    yield* viaRaw(50, 500)
    yield* viaNaive(50)
    for (let round = 0; round < options.rounds; round++) {
      for (const size of options.batchSizes) {
        const rows = size === 1 ? options.smallRows : options.rows
        // alternate the order each round
        const order: Array<Method> = round % 2 === 0 ? ["sink-pg", "raw-unnest"] : ["raw-unnest", "sink-pg"]
        for (const method of order) {
          record(method, size, rows, yield* (method === "sink-pg" ? viaSink : viaRaw)(size, rows))
        }
      }
      record("naive-per-op", 1, options.smallRows, yield* viaNaive(options.smallRows))
    }
    return measured.map(({ rounds, ...figure }): Figure => ({ ...figure, rowsPerSecond: Summary.summarize(rounds).p50, rounds }))
  }).pipe(Effect.scoped)

/** Measures every method at every batch size on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, options: Options) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_sink")
    return yield* measure(url, options).pipe(
      Effect.provide(
        Layer.effectDiscard(Migrations.run).pipe(
          Layer.provideMerge(PgClient.layer({ url, maxConnections: 2, applicationName: "bench-sink" }))
        )
      )
    )
  }).pipe(Effect.scoped)
