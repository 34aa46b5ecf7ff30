/**
 * The host program. Builds the app — database (external or embedded), PostgreSQL sink, sector host, HTTP API —
 * says in one line where it listens and which database it uses, serves until the first SIGINT/SIGTERM, then shuts
 * down in order: readiness turns 503 and new ops get 503 `ShuttingDown` at once (`Lifecycle`), every sector drains
 * and flushes within `SHUTDOWN_TIMEOUT` while the HTTP server keeps answering (so `ack=durable` requests get their
 * answer), one log line reports it, and only then the scope closes the HTTP server (in-flight requests finish), the
 * pool, the host lock, and the embedded PostgreSQL.
 *
 * A standalone host is the only one on its database: before anything else touches the database it takes the host
 * lock (`HostLock`, exclusive) and does not start if another host holds it (`Startup` says who). It holds the lock
 * until after the final flush. Should the lock be lost to another host while this one runs (its connection was cut
 * and the other took it meanwhile), the host shuts down as on a signal and exits non-zero (`DatabaseLost`).
 * Before all of it, `Exposure` refuses to serve beyond loopback without a token, and `Tls` half a TLS configuration.
 *
 * With `RUNNER_PORT` the host is a runner of the cluster of every runner on its database (`Cluster`): it takes the
 * host lock shared (runners share a database; a standalone host and a cluster cannot), its HTTP API answers for every
 * sector through `Sectors`, forwarding to the owner, and on shutdown it first leaves the cluster — every sector it owns
 * drains and flushes, then its shard goes to another runner — within `SHUTDOWN_TIMEOUT`, before the host's own
 * shutdown reports what is left.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { SectorHost, SectorsConfig } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { HostLock, SinkPg } from "@sectors/sink-pg"
import { Context, Data, Duration, Effect, Fiber, Layer, Option } from "effect"
import { RunnerAddress } from "effect/cluster"
import { HttpRouter, HttpServer } from "effect/http"
import * as os from "node:os"
import { HostConfig } from "./HostConfig.ts"
import * as Exposure from "./Exposure.ts"
import * as Cluster from "./Cluster.ts"
import * as Http from "./Http.ts"
import * as Ingest from "./Ingest.ts"
import * as Lifecycle from "./Lifecycle.ts"
import * as RuntimeMetrics from "./RuntimeMetrics.ts"
import * as Sectors from "./Sectors.ts"
import * as Simulator from "./Simulator.ts"
import * as Tls from "./Tls.ts"

/** Where the database is: `DATABASE_URL`, or an embedded server in `DATA_DIR`. */
const databaseUrl = Layer.unwrap(HostConfig.useSync((config) =>
  PgEmbedded.layerFrom(config.databaseUrl, { dataDir: config.dataDir })
))

/** The lock holder's identity, as a refused host reads it: `sector-host pid=4242 http=127.0.0.1:8080 host=box`. */
const identity = (config: HostConfig["Service"]) =>
  `sector-host pid=${process.pid} http=${config.host.includes(":") ? `[${config.host}]` : config.host}:${config.port} ` +
  `host=${os.hostname()}`

/** The database to this host alone: taken before the sink touches it, released once the sink and HTTP have closed. */
const hostLock = Layer.unwrap(Effect.gen(function*() {
  const config = yield* HostConfig
  const { url } = yield* PgEmbedded.DatabaseUrl
  return HostLock.layer({
    url,
    identity: identity(config),
    mode: Option.isSome(config.runnerPort) ? "shared" : "exclusive"
  })
}))

/** The sector host on the PostgreSQL sink (probed and migrated at start), on a database this host holds. */
const sectors = SectorHost.layer.pipe(
  Layer.provideMerge(Layer.unwrap(PgEmbedded.DatabaseUrl.useSync(({ url }) =>
    SinkPg.layer(url, { client: { applicationName: "sector-host" } })
  ))),
  Layer.provideMerge(hostLock),
  Layer.provideMerge(databaseUrl)
)

/** Where this runner listens and its peers reach it (`RUNNER_HOST`, else `HOST`), when clustered. */
const runnerAddress = (config: HostConfig["Service"]) =>
  Option.map(config.runnerPort, (port) => RunnerAddress.make(Option.getOrElse(config.runnerHost, () => config.host), port))

/**
 * Where per-sector requests go: the local host when standalone (nothing of the cluster is built), the `Sector` entity
 * of the cluster on a runner.
 */
const routing = Layer.unwrap(Effect.gen(function*() {
  const config = yield* HostConfig
  const sectorsConfig = yield* SectorsConfig.SectorsConfig
  const address = runnerAddress(config)
  if (Option.isNone(address)) return Sectors.layerLocal
  const { url } = yield* PgEmbedded.DatabaseUrl
  const runner = Cluster.layerRunner({
    url,
    address: address.value,
    shardsPerGroup: config.shardsPerGroup,
    shardLockExpiration: config.shardLockExpiration,
    shardLockRefreshInterval: config.shardLockRefreshInterval,
    refreshAssignmentsInterval: config.refreshAssignmentsInterval,
    entityMaxIdleTime: sectorsConfig.passivateAfter,
    entityTerminationTimeout: config.shutdownTimeout,
    applicationName: `sector-host cluster ${Cluster.format(address.value)}`,
    tokens: config.authToken
  })
  return Sectors.layerCluster(runner, {
    forwardTimeout: config.forwardTimeout,
    retryAfterMillis: 1000,
    flushWait: config.durableTimeout
  })
}))

/**
 * The HTTP server on the configured address, with the configured limits (its parser's refusals answered as problems
 * too), and `/ingest`'s WebSocket frames bounded by `maxBodyBytes`.
 */
const server = Layer.unwrap(HostConfig.useSync((config) =>
  NodeHttpServer.layer(() => Http.makeServer(config), {
    host: config.host,
    port: config.port,
    websocket: Ingest.websocketOptions(config)
  })
))

/** Everything the running host is made of; `/metrics` includes the process and runtime figures (`RuntimeMetrics`). */
export const app = HttpRouter.serve(Http.routes, { disableListenLog: true, disableLogger: true }).pipe(
  Layer.provideMerge(server),
  Layer.provideMerge(routing),
  Layer.provideMerge(sectors),
  Layer.provideMerge(RuntimeMetrics.layer)
)

/** The host lock was lost to another host while this one ran: it shut down in order, and exits non-zero. */
export class DatabaseLost extends Data.TaggedError("DatabaseLost")<{ readonly held: HostLock.HostLockHeld }> {}

/**
 * Runs the host until it is told to stop and returns the shutdown report. Needs `HostConfig`, `SectorsConfig`,
 * `Lifecycle` and logging.
 */
export const program = Effect.gen(function*() {
  const lifecycle = yield* Lifecycle.Lifecycle
  const config = yield* HostConfig
  const sectorsConfig = yield* SectorsConfig.SectorsConfig
  yield* Tls.check(config)
  yield* Exposure.check(config)
  const context = yield* Layer.build(app)
  const host = Context.get(context, SectorHost.SectorHost)
  const routed = Context.get(context, Sectors.Sectors)
  const plain = yield* HttpServer.addressFormattedWith(Effect.succeed).pipe(Effect.provideContext(context))
  const address = Option.isSome(config.tlsCert) ? plain.replace(/^http:/, "https:") : plain
  const database = Context.get(context, PgEmbedded.DatabaseUrl)
  const lock = Context.get(context, HostLock.HostLock)

  yield* lifecycle.onForcedExit(() => {
    const { ops, sectors } = host.unflushed()
    return ops === 0
      ? "nothing was left unflushed"
      : `${ops} accepted ops were not flushed (sectors ${sectors.slice(0, 20).join(", ")}${sectors.length > 20 ? ", …" : ""})`
  })
  let lostTo: HostLock.HostLockHeld | undefined
  yield* Effect.forkScoped(Effect.gen(function*() {
    const held = yield* lock.lost
    yield* Effect.logError(`sector-host lost the database to another host (${held.message}): shutting down`)
    lostTo = held
    yield* lifecycle.requestShutdown
  }))
  yield* lifecycle.markReady
  const runner = Option.match(runnerAddress(config), { onNone: () => "", onSome: (a) => `, runner: ${Cluster.format(a)}` })
  yield* Effect.logInfo(
    `sector-host listening on ${address}, database: ${database.description}, profile: ${sectorsConfig.profile}${runner}`
  )
  const simulation = Option.isSome(config.simulate)
    ? Option.some(yield* Effect.forkScoped(Simulator.run(config.simulate.value).pipe(Effect.provideContext(context))))
    : Option.none()

  yield* lifecycle.awaitShutdown
  yield* Effect.logInfo("sector-host shutting down: intake stopped, flushing")
  if (Option.isSome(simulation)) yield* Fiber.interrupt(simulation.value)
  if (routed.mode._tag === "Cluster") {
    // hand every owned sector off (drained, flushed) before the host's own shutdown reports what could not be
    const started = Date.now()
    const left = yield* routed.leave.pipe(Effect.timeoutOption(config.shutdownTimeout))
    yield* Effect.logInfo(
      Option.isSome(left)
        ? `sector-host left the cluster in ${Date.now() - started} ms: its shards are released`
        : `sector-host could not hand every sector off within ${Duration.format(config.shutdownTimeout)}`
    )
  }
  const report = yield* host.shutdown
  if (lostTo !== undefined) return yield* new DatabaseLost({ held: lostTo })
  return report
}).pipe(Effect.scoped)
