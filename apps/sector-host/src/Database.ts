/**
 * The host's database: `DATABASE_URL` when configured, otherwise an embedded PostgreSQL in the configured data
 * directory; a connection pool on it, probed once so that a wrong URL or password fails start-up with one clear
 * line instead of at the first write.
 */
import { PgClient } from "@effect/sql-pg"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { HostConfig } from "./HostConfig.ts"

/** Where the database is: external or embedded. */
export const layerUrl = Layer.unwrap(Effect.gen(function*() {
  const config = yield* HostConfig
  return PgEmbedded.layerFrom(config.databaseUrl, { dataDir: config.dataDir })
}))

/** Fails start-up unless the database answers. */
const probe = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`SELECT 1`
}))

/** `SqlClient` (and `PgClient`) on the configured database, probed; also yields `DatabaseUrl`. */
export const layer = Layer.unwrap(Effect.gen(function*() {
  const { url } = yield* PgEmbedded.DatabaseUrl
  return probe.pipe(
    Layer.provideMerge(PgClient.layer({ url, applicationName: "sector-host", maxConnections: 8 }))
  )
})).pipe(Layer.provideMerge(layerUrl))
