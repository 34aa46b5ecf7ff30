/**
 * The host program: build every layer of the app, say in one line where it listens and which database it uses,
 * serve until the first SIGINT/SIGTERM, then shut down in order (the scope closes the HTTP server, then the
 * database pool, then the embedded PostgreSQL).
 */
import { NodeHttpServer } from "@effect/platform-node"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { createServer } from "node:http"
import * as Database from "./Database.ts"
import { HostConfig } from "./HostConfig.ts"
import * as Http from "./Http.ts"
import * as Lifecycle from "./Lifecycle.ts"

/** The HTTP server on the configured address. */
const server = Layer.unwrap(HostConfig.useSync((config) =>
  NodeHttpServer.layer(() => createServer(), { host: config.host, port: config.port })
))

/** Everything the running host is made of. */
export const app = HttpRouter.serve(Http.routes, { disableListenLog: true, disableLogger: true }).pipe(
  Layer.provideMerge(server),
  Layer.provideMerge(Database.layer)
)

/** Runs the host until it is told to stop. Needs `HostConfig`, `Lifecycle` and logging. */
export const program = Effect.gen(function*() {
  const lifecycle = yield* Lifecycle.Lifecycle
  const context = yield* Layer.build(app)
  const address = yield* HttpServer.addressFormattedWith(Effect.succeed).pipe(Effect.provideContext(context))
  const database = yield* PgEmbedded.DatabaseUrl.pipe(Effect.provideContext(context))
  yield* lifecycle.markReady
  yield* Effect.logInfo(`sector-host listening on ${address}, database: ${database.description}`)
  yield* lifecycle.awaitShutdown
  yield* Effect.logInfo("sector-host shutting down")
}).pipe(Effect.scoped)
