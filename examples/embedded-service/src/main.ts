/**
 * Runs the service: HTTP on `PORT` (defaults to 3000), sectors on the PostgreSQL at `DATABASE_URL` — an embedded
 * server when it is not set, for trying it out — tuned by the runtime's variables (`BATCH_PROFILE`, …), traced to
 * `OTEL_EXPORTER_OTLP_ENDPOINT` when set. Ctrl-C flushes every accepted move before the process exits.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { SectorsConfig } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { SinkPg } from "@sectors/sink-pg"
import { Config, Effect, Layer } from "effect"
import { createServer } from "node:http"
import * as Service from "./Service.ts"
import * as Telemetry from "./Telemetry.ts"

const Server = Layer.unwrap(Effect.map(
  Config.Port("PORT").pipe(Config.withDefault(3000)),
  (port) => NodeHttpServer.layer(createServer, { port })
))

/** The sink on `DATABASE_URL`; `PgEmbedded.layer()` starts a server when it is unset (leave it out in production). */
const Sink = Layer.unwrap(PgEmbedded.DatabaseUrl.useSync(({ url }) => SinkPg.layer(url))).pipe(
  Layer.provide(PgEmbedded.layer())
)

const Main = Service.layer.pipe(
  Layer.provide([Server, Sink, SectorsConfig.layerFromEnv()]),
  Layer.provide(Telemetry.layerFromEnv)
)

NodeRuntime.runMain(Layer.launch(Main))
