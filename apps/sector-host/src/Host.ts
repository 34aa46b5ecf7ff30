/**
 * The host program. Builds the app — database (external or embedded), PostgreSQL sink, sector host, HTTP API —
 * says in one line where it listens and which database it uses, serves until the first SIGINT/SIGTERM, then shuts
 * down in order: readiness turns 503 and new ops get 503 `ShuttingDown` at once (`Lifecycle`), every sector drains
 * and flushes within `SHUTDOWN_TIMEOUT` while the HTTP server keeps answering (so `ack=durable` requests get their
 * answer), one log line reports it, and only then the scope closes the HTTP server (in-flight requests finish), the
 * pool, and the embedded PostgreSQL.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { SectorHost, SectorsConfig } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { SinkPg } from "@sectors/sink-pg"
import { Context, Effect, Fiber, Layer, Option } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { HostConfig } from "./HostConfig.ts"
import * as Http from "./Http.ts"
import * as Lifecycle from "./Lifecycle.ts"
import * as Simulator from "./Simulator.ts"

/** Where the database is: `DATABASE_URL`, or an embedded server in `DATA_DIR`. */
const databaseUrl = Layer.unwrap(HostConfig.useSync((config) =>
  PgEmbedded.layerFrom(config.databaseUrl, { dataDir: config.dataDir })
))

/** The sector host on the PostgreSQL sink (probed and migrated at start). */
const sectors = SectorHost.layer.pipe(
  Layer.provideMerge(Layer.unwrap(PgEmbedded.DatabaseUrl.useSync(({ url }) =>
    SinkPg.layer(url, { client: { applicationName: "sector-host" } })
  ))),
  Layer.provideMerge(databaseUrl)
)

/** The HTTP server on the configured address (its parser's refusals answered as problems too). */
const server = Layer.unwrap(HostConfig.useSync((config) =>
  NodeHttpServer.layer(Http.makeServer, { host: config.host, port: config.port })
))

/** Everything the running host is made of. */
export const app = HttpRouter.serve(Http.routes, { disableListenLog: true, disableLogger: true }).pipe(
  Layer.provideMerge(server),
  Layer.provideMerge(sectors)
)

/**
 * Runs the host until it is told to stop and returns the shutdown report. Needs `HostConfig`, `SectorsConfig`,
 * `Lifecycle` and logging.
 */
export const program = Effect.gen(function*() {
  const lifecycle = yield* Lifecycle.Lifecycle
  const config = yield* HostConfig
  const sectorsConfig = yield* SectorsConfig.SectorsConfig
  const context = yield* Layer.build(app)
  const host = Context.get(context, SectorHost.SectorHost)
  const address = yield* HttpServer.addressFormattedWith(Effect.succeed).pipe(Effect.provideContext(context))
  const database = Context.get(context, PgEmbedded.DatabaseUrl)

  yield* lifecycle.onForcedExit(() => {
    const { ops, sectors } = host.unflushed()
    return ops === 0
      ? "nothing was left unflushed"
      : `${ops} accepted ops were not flushed (sectors ${sectors.slice(0, 20).join(", ")}${sectors.length > 20 ? ", …" : ""})`
  })
  yield* lifecycle.markReady
  yield* Effect.logInfo(
    `sector-host listening on ${address}, database: ${database.description}, profile: ${sectorsConfig.profile}`
  )
  const simulation = Option.isSome(config.simulate)
    ? Option.some(yield* Effect.forkScoped(Simulator.run(config.simulate.value).pipe(Effect.provideContext(context))))
    : Option.none()

  yield* lifecycle.awaitShutdown
  yield* Effect.logInfo("sector-host shutting down: intake stopped, flushing")
  if (Option.isSome(simulation)) yield* Fiber.interrupt(simulation.value)
  return yield* host.shutdown
}).pipe(Effect.scoped)
