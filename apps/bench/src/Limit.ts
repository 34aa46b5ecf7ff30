/**
 * The practical limit and how close the runtime gets to it when collapsing cannot help. The limit: a raw `UNNEST`
 * upsert loop through the `postgres` driver on as many connections as the sink has writers, 1 000 rows with
 * distinct keys per statement — what this database takes. The runtime: a host (balanced profile) on the sink, fed
 * by producers that submit 500 distinct-key ops at a time to 8 sectors with backpressure (waiting for mailbox
 * room), counting ops persisted. Both run for the same time on fresh databases of the same server. `shape` holds
 * those numbers (the report quotes them); `rawUpsert` is the raw statement, also `SinkThroughput`'s reference.
 */
import { Metrics, type Op, SectorHost, SectorsConfig } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Migrations, SinkPg } from "@sectors/sink-pg"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer, Logger, Metric, Redacted } from "effect"
import postgres from "postgres"

/** Both figures. */
export interface Result {
  readonly seconds: number
  readonly rawRowsPerSecond: number
  readonly runtimeOpsPerSecond: number
  readonly runtimeCpuCores: number
}

/** How both sides are fed. */
export const shape = {
  /** Distinct-key rows per raw statement. */
  rowsPerStatement: 1_000,
  /** Connections of the raw loop: as many as the sink has writers. */
  connections: SinkPg.defaults.writers,
  /** Sectors the runtime is fed, one producer each. */
  sectors: 8,
  /** Distinct-key ops per submission. */
  opsPerSubmission: 500
} as const

const data = (i: number) => ({ x: i % 1000, y: (i * 7) % 1000 })

/**
 * The raw statement: one `UNNEST` upsert of `entities` of `sectorId` into `entity_components` (component
 * `position`, payload `data(entity)`, seq `entity + 1`), a row changing only for a higher seq, as the sink's do.
 */
export const rawUpsert = (
  sql: postgres.Sql,
  sectorId: number,
  entities: ReadonlyArray<number>,
  data: (entity: number) => object
) =>
  sql`INSERT INTO entity_components AS t (sector_id, entity_id, component, data, seq)
    SELECT * FROM unnest(${entities.map(() => sectorId)}::bigint[], ${entities}::bigint[],
                         ${entities.map(() => "position")}::text[],
                         ${entities.map((e) => JSON.stringify(data(e)))}::text[]::jsonb[], ${entities.map((e) => e + 1)}::bigint[])
    ON CONFLICT (sector_id, entity_id, component)
    DO UPDATE SET data = EXCLUDED.data, seq = EXCLUDED.seq WHERE t.seq < EXCLUDED.seq`

/** The raw loop for `seconds`: rows per second. */
const rawLoop = (url: Redacted.Redacted<string>, seconds: number) =>
  Effect.promise(async () => {
    const { connections, rowsPerStatement } = shape
    const sql = postgres(Redacted.value(url), { max: connections, onnotice: () => {} })
    let rows = 0
    const end = performance.now() + seconds * 1000
    const worker = async (sectorId: number) => {
      for (let next = 0; performance.now() < end; next += rowsPerStatement) {
        await rawUpsert(sql, sectorId, Array.from({ length: rowsPerStatement }, (_, i) => next + i), data)
        rows += rowsPerStatement
      }
    }
    const start = performance.now()
    await Promise.all(Array.from({ length: connections }, (_, i) => worker(i)))
    const elapsed = (performance.now() - start) / 1000
    await sql.end()
    return rows / elapsed
  })

/** Producers feeding the runtime distinct keys for `seconds`; ops persisted per second. */
const runtime = (url: Redacted.Redacted<string>, seconds: number) =>
  Effect.gen(function*() {
    const host = yield* SectorHost.SectorHost
    const { opsPerSubmission, sectors } = shape
    for (let s = 0; s < sectors; s++) yield* host.stats(s)
    const before = (yield* Metric.value(Metrics.opsPersisted)).count
    const cpuBefore = process.cpuUsage()
    const start = performance.now()
    const end = start + seconds * 1000
    yield* Effect.forEach(Array.from({ length: sectors }, (_, s) => s), (sectorId) =>
      Effect.gen(function*() {
        let next = 0
        while (performance.now() < end) {
          const ops: Array<Op.Op> = []
          for (let i = 0; i < opsPerSubmission; i++, next++) ops.push({ type: "set", entity: next, component: "position", data: data(next) })
          yield* host.submit(sectorId, ops, { mailboxWait: Duration.seconds(30) })
        }
      }), { concurrency: "unbounded", discard: true })
    const elapsed = (performance.now() - start) / 1000
    const persisted = (yield* Metric.value(Metrics.opsPersisted)).count - before
    const cpu = process.cpuUsage(cpuBefore)
    yield* host.shutdown
    return { opsPerSecond: persisted / elapsed, cpuCores: (cpu.user + cpu.system) / 1000 / (elapsed * 1000) }
  }).pipe(
    Effect.provide(SectorHost.layer.pipe(
      Layer.provideMerge(SinkPg.layer(url, { client: { maxConnections: 10, applicationName: "bench-limit" } })),
      Layer.provide(SectorsConfig.layer({ profile: "balanced" }))
    ))
  )

/** Measures both on fresh databases of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, seconds: number) =>
  Effect.gen(function*() {
    const rawUrl = yield* PgEmbedded.freshDatabase(serverUrl, "bench_raw")
    yield* Migrations.run.pipe(Effect.provide(PgClient.layer({ url: rawUrl, maxConnections: 1 })))
    const rawRowsPerSecond = yield* rawLoop(rawUrl, seconds)
    const runtimeUrl = yield* PgEmbedded.freshDatabase(serverUrl, "bench_runtime")
    const measured = yield* runtime(runtimeUrl, seconds)
    return {
      seconds,
      rawRowsPerSecond,
      runtimeOpsPerSecond: measured.opsPerSecond,
      runtimeCpuCores: measured.cpuCores
    } satisfies Result
  }).pipe(Effect.scoped, Effect.provide(Logger.layer([])))
