/** A fresh database per test file, migrated, with the sink on it. */
import { PgEmbedded } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Layer } from "effect"
import { SinkPg } from "../src/index.ts"

/** `DatabaseUrl` of a fresh database, dropped with the layer. */
export const database = TestDatabase.layer

/** The sink (and `SqlClient`, `PgClient`, `DatabaseUrl`) on a fresh, migrated database. */
export const sinkLayer = (options: SinkPg.Options = {}) =>
  Layer.unwrap(PgEmbedded.DatabaseUrl.useSync(({ url }) =>
    SinkPg.layer(url, { ...options, client: { maxConnections: 6, applicationName: "sink-pg-test" } })
  )).pipe(Layer.provideMerge(database))
