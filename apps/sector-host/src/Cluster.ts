/**
 * Sectors sharded over several hosts with effect's cluster (issue 14): a sector is the cluster entity `Sector`, each
 * host with `RUNNER_PORT` is a runner, and every runner on one database belongs to one cluster. Shard ownership,
 * membership and routing are effect's (`Sharding`, `SqlRunnerStorage`, the WebSocket runner of
 * `effect/cluster`'s `HttpRunner`); this module only declares the entity, its behaviour over the local `SectorHost`, and the
 * layers wired the way this host needs them:
 *
 * - **The entity** mirrors the per-sector operations of `SectorHost` as RPCs (`Submit`, `Get`, `Stats`, `Flush`,
 *   `DeadLetters`) whose errors are the core's own (`Errors`), so an answer forwarded from the owner is exactly the
 *   answer the owner would give over HTTP.
 * - **Handoff.** An entity's build scope closes when its shard moves (a runner joins or leaves), when it idles out and
 *   when the runner stops; its finalizer is `SectorHost.release`, which drains the sector's mailbox and flushes
 *   everything — with no deadline, retrying while the database is away — and only then lets the shard lock go, so the
 *   next owner claims (epoch + 1) a sector whose every accepted op is durable.
 * - **Storage.** Runners and shard locks in PostgreSQL (`SqlRunnerStorage`, tables `cluster_runners` and
 *   `cluster_locks`, advisory locks on a reserved session) on a pool of its own of `clusterPoolSize` connections, so
 *   sink load cannot starve lock refresh. Messages are volatile (`MessageStorage.layerNoop`: no message tables): a
 *   sector persists write-behind, and persisted messages would add two writes per request.
 * - **Configuration** is passed explicitly (`ShardingConfig.layer`), never `ShardingConfig.layerFromEnv`: that one
 *   reads `HOST` and `PORT`, which are this host's HTTP settings.
 *
 * **Gotchas** volatile delivery is at-least-once (a request whose connection dropped is sent again), so a `Submit`
 * carries a request id and a fingerprint for the owner to deduplicate; and a volatile send retries forever while its
 * shard has no owner, so every forwarded call is bounded by the caller (`Sectors`).
 */
import { NodeHttpServer, NodeSocket } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Batch, Errors, Op, SectorHost } from "@sectors/core"
import { Duration, Effect, HashRing, Layer, Metric, Option, Redacted, Schema } from "effect"
import {
  Entity,
  EntityId,
  MessageStorage,
  RunnerAddress,
  RunnerHealth,
  Runners,
  RunnerStorage,
  HttpRunner,
  Sharding,
  ShardingConfig,
  SqlRunnerStorage
} from "effect/cluster"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { Rpc, RpcSerialization } from "effect/rpc"
import { Socket } from "effect/socket"
import * as http from "node:http"
import * as Guard from "./Guard.ts"

/** A sector that cannot be reached in time: its owner did not answer (its shard is moving, or the owner died). */
export class SectorUnreachable extends Schema.TaggedError<SectorUnreachable>()("SectorUnreachable", {
  sectorId: Schema.Number,
  retryAfterMillis: Schema.Number,
  reason: Schema.String
}) {
  override get message(): string {
    return `sector ${this.sectorId} cannot be reached (${this.reason})`
  }
}

// ---- the entity's protocol ----

const Accepted = Schema.Struct({
  sectorId: Schema.Number,
  accepted: Schema.Number,
  firstSeq: Schema.Number,
  lastSeq: Schema.Number,
  persisted: Schema.Boolean,
  /** The answer to an earlier submission with the same key (nothing applied this time): `Idempotent-Replayed`. */
  replayed: Schema.optional(Schema.Boolean)
})

const EntityView = Schema.Struct({
  entity: Schema.Number,
  components: Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Json)),
  authority: Schema.Record(Schema.String, Schema.String),
  seq: Schema.Number
})

const CircuitStatus = Schema.Union([
  Schema.TaggedStruct("Closed", {}),
  Schema.TaggedStruct("HalfOpen", {}),
  Schema.TaggedStruct("Open", { until: Schema.Number, consecutiveOpenings: Schema.Number })
])

const SectorStats = Schema.Struct({
  sectorId: Schema.Number,
  phase: Schema.Literals(["running", "draining", "stopped", "fenced", "passive"]),
  epoch: Schema.Number,
  mailboxDepth: Schema.Number,
  mailboxCapacity: Schema.Number,
  pendingOps: Schema.Number,
  pendingKeys: Schema.Number,
  maxPendingKeys: Schema.Number,
  oldestPendingMillis: Schema.Number,
  inFlightOps: Schema.Number,
  lastSeq: Schema.Number,
  persistedSeq: Schema.Number,
  persistedAt: Schema.UndefinedOr(Schema.Number),
  entities: Schema.Number,
  awake: Schema.Boolean,
  counters: Schema.Struct({
    received: Schema.Number,
    persisted: Schema.Number,
    collapsed: Schema.Number,
    batches: Schema.Number,
    deadLetters: Schema.Number,
    restarts: Schema.Number,
    timerWakeups: Schema.Number
  })
})

/** A sector's figures with the circuit of the host that owns it (the one its persists go through). */
export const StatusView = Schema.Struct({ stats: SectorStats, circuit: CircuitStatus })
export type StatusView = typeof StatusView.Type

/** A dead letter as the API shows it: the rejected entry as the op that wrote it. */
export const DeadLetterView = Schema.Struct({
  seq: Schema.Number,
  entry: Op.Op,
  error: Schema.String,
  code: Schema.NullOr(Schema.String),
  at: Schema.Number
})
export type DeadLetterView = typeof DeadLetterView.Type

/** A dead letter of the sink as the API shows it. */
export const deadLetterView = (letter: { readonly seq: number; readonly entry: Batch.Entry; readonly error: string; readonly code?: string | undefined; readonly at: number }): DeadLetterView => ({
  seq: letter.seq,
  entry: Batch.entryToOp(letter.entry),
  error: letter.error,
  code: letter.code ?? null,
  at: letter.at
})

/** Why reaching a sector can fail (`SectorHost.ActivationError`). */
const ActivationError = Schema.Union([
  Errors.SinkUnavailable,
  Errors.ShuttingDown,
  Errors.SectorFenced,
  Errors.ResidencyFull
])

/** Submits ops; `requestId` and `fingerprint` let the owner recognise a resent submission. */
export const Submit = Rpc.make("Submit", {
  payload: {
    ops: Schema.Array(Op.Op),
    ack: Schema.Literals(["accepted", "durable"]),
    durableTimeoutMillis: Schema.optional(Schema.Number),
    mailboxWaitMillis: Schema.Number,
    /** One per HTTP request, made by the host that received it; the same on every resend. */
    requestId: Schema.String,
    /** How long the owner remembers `requestId` when not for `IDEMPOTENCY_TTL`: as long as the sender may resend. */
    keyTtlMillis: Schema.optional(Schema.Number),
    /**
     * What identifies the content for the key's owner (a client's body hash): the same key with another fingerprint
     * is refused. Empty for the forwarding host's own request ids, which are never reused.
     */
    fingerprint: Schema.String
  },
  success: Accepted,
  error: Schema.Union([
    Errors.InvalidOp,
    Errors.MailboxFull,
    Errors.BacklogFull,
    Errors.BufferFull,
    Errors.ShuttingDown,
    Errors.DurableTimeout,
    Errors.SectorFenced,
    Errors.ResidencyFull,
    Errors.SinkUnavailable,
    Errors.IdempotencyMismatch
  ])
})

/** Reads an entity (read-your-writes on the owner). */
export const Get = Rpc.make("Get", {
  payload: { entity: Op.EntityId },
  success: Schema.Option(EntityView),
  error: ActivationError
})

/** A sector's figures, and the circuit of its owner. */
export const Stats = Rpc.make("Stats", { success: StatusView, error: ActivationError })

/** Waits until everything the sector accepted so far is durable. */
export const Flush = Rpc.make("Flush", { success: Schema.Number, error: ActivationError })

/** The sector's dead letters. */
export const DeadLetters = Rpc.make("DeadLetters", {
  success: Schema.Array(DeadLetterView),
  error: Errors.SinkUnavailable
})

/** The sector as a cluster entity; its id is the sector id in decimal. */
export const Sector = Entity.make("Sector", [Submit, Get, Stats, Flush, DeadLetters])

// ---- metrics ----

/** Per-sector requests this host sent through the cluster, by RPC and outcome (`ok`, `error`: the sector's own, `unreachable`). */
export const forwarded = Metric.counter("sectors_cluster_forwarded_total", {
  description: "Per-sector requests sent through the cluster (to this runner or another), by rpc and outcome"
})

/** Sectors handed off by this runner (their shard moved, they idled out, or the runner stopped). */
export const handoffs = Metric.counter("sectors_cluster_handoffs_total", {
  description: "Sectors this runner let go after flushing them (shard moved, idle, or shutdown)"
})

/** How long handing a sector off took: its drain and final flush. */
export const handoffSeconds = Metric.histogram("sectors_cluster_handoff_seconds", {
  description: "Time to drain and flush a sector before its shard is released",
  boundaries: Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 16 })
})

// ---- behaviour ----

/**
 * The entity's behaviour on this runner: every handler calls the local `SectorHost`; the activation's scope
 * releases the sector (drain, flush, drop) before the shard may go. Needs `SectorHost` and `Sharding`.
 */
export const layerBehaviour = (options: { readonly maxIdleTime: Duration.Duration }) =>
  Sector.toLayer(
    Effect.gen(function*() {
      const address = yield* Entity.CurrentAddress
      const sectorId = Number(address.entityId)
      const host = yield* SectorHost.SectorHost
      yield* Effect.addFinalizer(() =>
        host.release(sectorId).pipe(
          Effect.timed,
          Effect.flatMap(([elapsed]) =>
            Effect.andThen(
              Metric.update(handoffs, 1),
              Metric.update(handoffSeconds, Duration.toSeconds(elapsed))
            )
          )
        )
      )
      return Sector.of({
        Submit: ({ payload }) =>
          host.submit(sectorId, payload.ops, {
            ack: payload.ack,
            mailboxWait: Duration.millis(payload.mailboxWaitMillis),
            ...(payload.durableTimeoutMillis === undefined
              ? {}
              : { durableTimeout: Duration.millis(payload.durableTimeoutMillis) }),
            // a resent submission (the transport is at-least-once) or a client's retry applies once
            idempotency: {
              key: payload.requestId,
              fingerprint: payload.fingerprint,
              ttl: payload.keyTtlMillis === undefined ? undefined : Duration.millis(payload.keyTtlMillis)
            }
          }),
        Get: ({ payload }) => host.get(sectorId, payload.entity),
        Stats: () => Effect.map(host.stats(sectorId), (stats) => ({ stats, circuit: host.circuit() })),
        Flush: () => host.flush(sectorId),
        DeadLetters: () => Effect.map(host.deadLetters(sectorId), (letters) => letters.map(deadLetterView))
      })
    }),
    // sectors are concurrent inside (a mailbox, a durable watermark): the entity must not serialise their callers
    { concurrency: "unbounded", maxIdleTime: options.maxIdleTime }
  )

// ---- runner ----

/** How this host takes part in the cluster. */
export interface RunnerOptions {
  /** The database every runner of the cluster shares. */
  readonly url: Redacted.Redacted<string>
  /** Where this runner listens and its peers reach it. */
  readonly address: RunnerAddress.RunnerAddress
  readonly shardsPerGroup: number
  readonly shardLockExpiration: Duration.Duration
  readonly shardLockRefreshInterval: Duration.Duration
  readonly refreshAssignmentsInterval: Duration.Duration
  /** How long an entity stays without a message before it is handed off (`passivateAfter`). */
  readonly entityMaxIdleTime: Duration.Duration
  /** How long in-flight handlers get to finish when a shard moves, before the flush (`shutdownTimeout`). */
  readonly entityTerminationTimeout: Duration.Duration
  /** `application_name` of the cluster pool's sessions. */
  readonly applicationName: string
  /**
   * The host's `AUTH_TOKEN`s: with any, the runner port answers only peers that send one (`Authorization: Bearer`,
   * compared like the HTTP API's), and this runner sends the first. None: the runner port is open to whoever reaches it.
   */
  readonly tokens: ReadonlyArray<Redacted.Redacted<string>>
}

/** Connections of the cluster's own pool: the lock session and room for heartbeats and runner reads. */
export const clusterPoolSize = 3

/** The sharding configuration of a runner, every field explicit (nothing read from the environment). */
export const shardingConfig = (options: RunnerOptions): ShardingConfig.ShardingConfig["Service"] => ({
  ...ShardingConfig.defaults,
  runnerAddress: Option.some(options.address),
  runnerListenAddress: Option.none(),
  shardsPerGroup: options.shardsPerGroup,
  shardLockExpiration: options.shardLockExpiration,
  shardLockRefreshInterval: options.shardLockRefreshInterval,
  refreshAssignmentsInterval: options.refreshAssignmentsInterval,
  entityMaxIdleTime: options.entityMaxIdleTime,
  entityTerminationTimeout: options.entityTerminationTimeout,
  // residency caps sectors (`maxActiveSectors`, 503 `residency-full`); an entity that only reads holds nothing
  maxResidentEntities: "unbounded",
  // a local call skips encoding: handlers neither keep nor change what they are given
  simulateRemoteSerialization: false
})

/**
 * The runner port: an HTTP server on the runner address whose only route is the cluster's WebSocket, behind a
 * bearer-token check when the host has tokens (401 before the upgrade otherwise), so a stranger who reaches the port
 * cannot send the runner messages. Peers dial it with the first token in the handshake.
 */
const runnerTransport = (options: RunnerOptions) => {
  const digests = options.tokens.map((token) => Guard.digest(Redacted.value(token)))
  const peers = Layer.mergeAll(
    HttpRouter.middleware(
      (httpApp) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          digests.length === 0 || Guard.bearerMatches(request.headers.authorization, digests)
            ? httpApp
            : Effect.succeed(HttpServerResponse.empty({ status: 401, headers: { "www-authenticate": "Bearer" } }))),
      { global: true }
    ),
    HttpRunner.layerWebsocketOptions({ path: "/" })
  )
  const server = NodeHttpServer.layer(() => http.createServer(), {
    host: options.address.host,
    port: options.address.port
  })
  const first = options.tokens[0]
  const dial = Layer.effect(Socket.WebSocketConstructor)(Effect.map(
    Socket.WebSocketConstructor,
    (construct) => (url: string) =>
      construct(url, first === undefined ? undefined : { headers: { authorization: `Bearer ${Redacted.value(first)}` } })
  )).pipe(Layer.provide(NodeSocket.layerWebSocketConstructor))
  const client = HttpRunner.layerClientProtocolWebsocket({ path: "/" }).pipe(Layer.provide(dial))
  return { serve: HttpRouter.serve(peers, { disableListenLog: true, disableLogger: true }), server, client }
}

/**
 * A runner with its storage in PostgreSQL: `Sharding` (with the `Sector` entity registered), and the
 * `RunnerStorage` and `ShardingConfig` it runs on (for `status`). What `NodeClusterHttp.layer` builds, but with the
 * configuration given rather than read from `HOST`/`PORT`, runner storage on a pool of its own, and the runner port
 * behind the host's tokens (`runnerTransport`).
 */
export const layerRunner = (options: RunnerOptions) => {
  const config = ShardingConfig.layer(shardingConfig(options))
  const pool = PgClient.layer({
    url: options.url,
    maxConnections: clusterPoolSize,
    connectTimeout: Duration.seconds(5),
    applicationName: options.applicationName
  })
  const storage = SqlRunnerStorage.layer.pipe(Layer.provide(pool))
  const transport = runnerTransport(options)
  const health = RunnerHealth.layerPing.pipe(
    Layer.provide(Runners.layerRpc),
    Layer.provide(transport.client)
  )
  const runner = transport.serve.pipe(
    Layer.provide(transport.client),
    Layer.provide(transport.server),
    Layer.provide(health),
    Layer.provide(MessageStorage.layerNoop)
  )
  return layerBehaviour({ maxIdleTime: options.entityMaxIdleTime }).pipe(
    Layer.provideMerge(runner),
    Layer.provideMerge(storage),
    Layer.provideMerge(config),
    Layer.provide(RpcSerialization.layerSchemaBinary())
  )
}

// ---- status ----

/** One runner of the cluster, as `GET /cluster` shows it. */
export interface RunnerView {
  readonly address: string
  readonly healthy: boolean
  /** Shards assigned to it: effect's assignment (a hash ring over the healthy runners), computed the same way. */
  readonly shards: number
}

/** This runner and every runner registered with the cluster. */
export interface ClusterView {
  readonly runner: string
  readonly shardsPerGroup: number
  readonly runners: ReadonlyArray<RunnerView>
}

/**
 * Reads the runners from storage and assigns the shards as `Sharding` does (one hash ring per shard group over the
 * healthy runners, by weight): every runner with its health, and each group's owners by shard (shard id − 1).
 */
const assignments = Effect.gen(function*() {
  const config = yield* ShardingConfig.ShardingConfig
  const storage = yield* RunnerStorage.RunnerStorage
  const runners = yield* storage.getRunners
  const rings = new Map<string, HashRing.HashRing<RunnerAddress.RunnerAddress>>()
  for (const [runner, healthy] of runners) {
    if (!healthy) continue
    for (const group of runner.groups) {
      let ring = rings.get(group)
      if (ring === undefined) rings.set(group, ring = HashRing.make())
      HashRing.add(ring, runner.address, { weight: runner.weight })
    }
  }
  const owners = new Map<string, ReadonlyArray<RunnerAddress.RunnerAddress>>()
  for (const [group, ring] of rings) owners.set(group, HashRing.getShards(ring, config.shardsPerGroup) ?? [])
  return { config, runners, owners }
})

/**
 * Reads the runners from storage and assigns the shards as `Sharding` does, so each runner's shard count is the one
 * the cluster converges to.
 */
export const status = Effect.gen(function*() {
  const { config, owners, runners } = yield* assignments
  const counts = new Map<string, number>()
  for (const shards of owners.values()) {
    for (const owner of shards) {
      const key = format(owner)
      counts.set(key, (counts.get(key) ?? 0) + 1)
    }
  }
  return {
    runner: Option.match(config.runnerAddress, { onNone: () => "", onSome: format }),
    shardsPerGroup: config.shardsPerGroup,
    runners: runners.map(([runner, healthy]): RunnerView => ({
      address: format(runner.address),
      healthy,
      shards: counts.get(format(runner.address)) ?? 0
    })).sort((a, b) => a.address.localeCompare(b.address))
  } satisfies ClusterView
})

/**
 * The runner a sector's shard is assigned to (`host:port`), the way `status` assigns shards; `undefined` while no
 * healthy runner serves its group. **Gotchas** while a shard moves, the runner named may not have claimed it yet.
 */
export const ownerOf = (sectorId: number) =>
  Effect.gen(function*() {
    const shard = yield* Sector.getShardId(EntityId.make(String(sectorId)))
    const { owners } = yield* assignments
    const owner = owners.get(shard.group)?.[shard.id - 1]
    return owner === undefined ? undefined : format(owner)
  })

/** `host:port` (`[::1]:34431` for IPv6). */
export const format = (address: RunnerAddress.RunnerAddress): string =>
  `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`

/** The sharding of a runner, for callers that only need a client. */
export type Services = Sharding.Sharding | RunnerStorage.RunnerStorage | ShardingConfig.ShardingConfig
