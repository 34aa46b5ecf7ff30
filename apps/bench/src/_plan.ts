import { PgClient } from "@effect/sql-pg"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Migrations, Statements } from "@sectors/sink-pg"
import { Effect, Logger } from "effect"
import { SqlClient } from "effect/sql"
const prog = Effect.gen(function*() {
  const server = yield* PgEmbedded.start({})
  return yield* Effect.gen(function*() {
    yield* Migrations.run
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO sectors (sector_id, epoch) SELECT g, 1 FROM generate_series(0, 9999) g`
    const ids = Array.from({ length: 50 }, (_, i) => i)
    let seq = 2
    for (let round = 0; round < 30; round++) {
      seq++
      const batches = ids.map((s) => ({ sectorId: s, epoch: 1, fromSeq: 1, toSeq: seq, ops: 2, trigger: "manual" as const,
        entries: [{ _tag: "Upsert" as const, entity: 1, component: "a", data: {}, seq }] }))
      const rows = yield* sql`EXPLAIN (ANALYZE, COSTS OFF, BUFFERS OFF) ${Statements.upsertGroup(sql, batches, { sectors: new Set(ids), claims: 1 })}`
      if (round === 29) console.log(rows.map((r) => Object.values(r)[0]).join("\n"))
    }
  }).pipe(Effect.provide(PgClient.layer({ url: server.url, maxConnections: 1 })))
}).pipe(Effect.scoped, Effect.provide(Logger.layer([])))
Effect.runPromise(prog)
