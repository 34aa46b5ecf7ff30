/**
 * Where the HTTP API sends a per-sector request: to the sector, wherever it lives. A standalone host (no
 * `RUNNER_PORT`) calls its own `SectorHost` directly — nothing of the cluster is built, nothing changes from a host
 * without clustering. A runner of a cluster calls the `Sector` entity (`Cluster`): the cluster routes the call to the
 * runner that owns the sector's shard, which may be this one, and the answer, success or core error, comes back as the
 * owner gave it, so the HTTP answers are the same either way.
 *
 * Every forwarded call has a deadline: the waits it carries (`mailboxWait`, `durableTimeout`) plus
 * `forwardTimeout`; past it the caller gets `SectorUnreachable` (503 with `Retry-After`). The cluster's own refusals
 * (its entity mailbox is full, the message could not be stored or routed) are `SectorUnreachable` too, and so is a
 * call the owner was interrupted in (its shard was force-released: the cluster's lock refresh failed).
 *
 * Every forwarded submission carries an idempotency key — the client's `Idempotency-Key`, or a request id of its
 * own — so a submission the transport delivers twice (a resend after a dropped connection, also to a new owner once
 * the first one made it durable) applies once.
 *
 * **Gotchas** a forwarded submission that timed out, or that its owner was interrupted in, may still have been
 * applied by its owner: the 503 says so, and a client retrying it should send an `Idempotency-Key`.
 */
import { type Batch, Errors, type Op, type Sector, SectorHost, type SectorState } from "@sectors/core"
import { Cause, Context, Duration, Effect, Exit, Layer, Metric, Option, Predicate, Scope } from "effect"
import { ClusterError } from "effect/cluster"
import { createHash, randomUUID } from "node:crypto"
import * as Cluster from "./Cluster.ts"

/** How a submission is acknowledged, and how long it may wait. */
export interface SubmitOptions {
  readonly ack: Sector.Ack
  readonly mailboxWait: Duration.Duration
  /** With `ack: "durable"`. */
  readonly durableTimeout?: Duration.Duration | undefined
  /** The client's `Idempotency-Key` and the fingerprint of its body, if it sent one (see `Sector.SubmitOptions`). */
  readonly idempotency?: { readonly key: string; readonly fingerprint: string } | undefined
  /**
   * With `ack: "durable"`, called once the ops have their seqs, before the wait for durability (see
   * `Sector.SubmitOptions`). Here only: a runner of a cluster hears of a forwarded submission once, when it is
   * answered, and does not call it.
   */
  readonly onAccepted?: ((accepted: Omit<Sector.Accepted, "persisted">) => void) | undefined
}

/** Failing to reach a sector (`SectorHost.ActivationError`), or its owner in time. */
export type ReachError = SectorHost.ActivationError | Cluster.SectorUnreachable

/** `GET /cluster`: this host alone, or its cluster. */
export type Mode =
  | { readonly _tag: "Standalone" }
  | {
    readonly _tag: "Cluster"
    readonly view: Effect.Effect<Cluster.ClusterView, Cluster.SectorUnreachable>
    /** The runner a sector's shard is assigned to (`Cluster.ownerOf`). */
    readonly ownerOf: (sectorId: number) => Effect.Effect<string | undefined, Cluster.SectorUnreachable>
  }

export class Sectors extends Context.Service<Sectors, {
  /** Submits ops to a sector (see `SectorHost.submit`). */
  readonly submit: (
    sectorId: number,
    ops: ReadonlyArray<Op.Op>,
    options: SubmitOptions
  ) => Effect.Effect<Sector.Accepted, Sector.SubmitError | Errors.ResidencyFull | Errors.SinkUnavailable | Cluster.SectorUnreachable>
  /**
   * Submits ops with an accepted ack at once, synchronously, when the sector is here and can take them now (see
   * `SectorHost.trySubmit`); `undefined` otherwise (always in a cluster: a sector's entity answers there) — then
   * `submit` them.
   */
  readonly trySubmit: (
    sectorId: number,
    ops: ReadonlyArray<Op.Op>,
    dataLengths?: Batch.DataLengths
  ) => Exit.Exit<Sector.Accepted> | undefined
  /**
   * The same with a durable ack (see `SectorHost.trySubmitDurable`): accepted at once, then `onDurable` hears once
   * how the wait ended, unless the returned `cancel` comes first; `undefined` when it cannot (always in a cluster).
   */
  readonly trySubmitDurable: SectorHost.SectorHost["Service"]["trySubmitDurable"]
  /** Reads an entity (see `SectorHost.get`). */
  readonly get: (sectorId: number, entity: number) => Effect.Effect<Option.Option<SectorState.EntityView>, ReachError>
  /** A sector's figures, with the circuit of the host that owns it. */
  readonly stats: (sectorId: number) => Effect.Effect<Cluster.StatusView, ReachError>
  /** Waits until everything the sector accepted so far is durable (see `SectorHost.flush`). */
  readonly flush: (sectorId: number) => Effect.Effect<number, ReachError>
  /** The sector's dead letters. */
  readonly deadLetters: (
    sectorId: number
  ) => Effect.Effect<
    ReadonlyArray<Cluster.DeadLetterView>,
    Errors.SinkUnavailable | Errors.ShuttingDown | Cluster.SectorUnreachable
  >
  /** Standalone, or a runner of a cluster and how to see it. */
  readonly mode: Mode
  /**
   * Leaves the cluster (a runner): every sector owned here is drained and flushed and its shard released to the other
   * runners; from the start, calls fail with `ShuttingDown`. Nothing to do standalone.
   */
  readonly leave: Effect.Effect<void>
}>()("sector-host/Sectors") {}

/** A standalone host: every call goes to the local `SectorHost`. */
export const layerLocal: Layer.Layer<Sectors, never, SectorHost.SectorHost> = Layer.effect(Sectors)(
  Effect.gen(function*() {
    const host = yield* SectorHost.SectorHost
    return Sectors.of({
      submit: (sectorId, ops, options) => host.submit(sectorId, ops, options),
      trySubmit: host.trySubmit,
      trySubmitDurable: host.trySubmitDurable,
      get: host.get,
      stats: (sectorId) => Effect.map(host.stats(sectorId), (stats) => ({ stats, circuit: host.circuit() })),
      flush: host.flush,
      deadLetters: (sectorId) => Effect.map(host.deadLetters(sectorId), (letters) => letters.map(Cluster.deadLetterView)),
      mode: { _tag: "Standalone" },
      leave: Effect.void
    })
  })
)

/** JSON with the keys of every object sorted: the same ops give the same text whatever order their keys came in. */
const canonical = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(canonical).join(",")}]`
    : value !== null && typeof value === "object"
    ? `{${
      Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
        .join(",")
    }}`
    : JSON.stringify(value)

/**
 * What makes two `/ingest` frames with the same idempotency key the same submission: a hash of their canonical ops
 * (whatever the order of their keys, and whatever their `ack`, as for the HTTP API's body).
 */
export const fingerprintOps = (ops: ReadonlyArray<Op.Op>): string =>
  createHash("sha256").update(canonical(ops)).digest("base64url")


/** What the cluster itself can answer a call with, besides the entity's own errors. */
type ClusterFailure =
  | ClusterError.MailboxFull
  | ClusterError.AlreadyProcessingMessage
  | ClusterError.PersistenceError
  | ClusterError.EntityNotAssignedToRunner

/**
 * Whether a failure is the cluster's, not the sector's. By class, not `_tag`: the cluster's `MailboxFull` (its entity
 * mailbox) has the same tag as the core's (the sector's).
 */
const isClusterFailure = (error: unknown): error is ClusterFailure =>
  ClusterError.MailboxFull.is(error) || ClusterError.AlreadyProcessingMessage.is(error) ||
  ClusterError.EntityNotAssignedToRunner.is(error) ||
  (Predicate.isTagged(error, "PersistenceError") && error instanceof ClusterError.PersistenceError)

const clusterReason = (error: ClusterFailure): string => {
  switch (error._tag) {
    case "MailboxFull":
      return "the cluster's mailbox for it is full"
    case "AlreadyProcessingMessage":
      return "the cluster is already processing this message"
    case "PersistenceError":
      return "the cluster could not store the message"
    case "EntityNotAssignedToRunner":
      return "its shard has no owner yet"
  }
}

/** How a runner forwards. */
export interface ClusterOptions {
  /** Past the waits a call carries, how long it may take to reach the owner and come back. */
  readonly forwardTimeout: Duration.Duration
  /** `Retry-After` of `SectorUnreachable`. */
  readonly retryAfterMillis: number
  /** How long a flush may wait for durability on the owner (`durableTimeout`). */
  readonly flushWait: Duration.Duration
}

/**
 * A runner of a cluster: builds the runner (`layer`, in a scope of its own that `leave` closes) and calls the
 * `Sector` entity. Needs `SectorHost` for the entity's behaviour.
 */
export const layerCluster = <E>(
  runner: Layer.Layer<Cluster.Services, E, SectorHost.SectorHost>,
  options: ClusterOptions
): Layer.Layer<Sectors, E, SectorHost.SectorHost> =>
  Layer.effect(Sectors)(Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer((exit) => Scope.close(scope, exit))
    const context = yield* Layer.buildWithScope(runner, scope)
    const makeClient = yield* Effect.provideContext(Cluster.Sector.client, context)
    const view = Effect.provideContext(Cluster.status, context)
    const unreadable = (error: { readonly message: string }) =>
      new Cluster.SectorUnreachable({
        sectorId: -1,
        retryAfterMillis: options.retryAfterMillis,
        reason: `cannot read the runners: ${error.message}`
      })
    let leaving = false

    /** Runs a call on the owner within `wait` + `forwardTimeout`; the cluster's own failures are `SectorUnreachable`. */
    const forward = <A, E2>(
      rpc: string,
      sectorId: number,
      wait: Duration.Duration,
      call: Effect.Effect<A, E2 | ClusterFailure>
    ): Effect.Effect<A, Exclude<E2, ClusterFailure> | Cluster.SectorUnreachable | Errors.ShuttingDown> => {
      if (leaving) return Effect.fail(new Errors.ShuttingDown({ sectorId }))
      const unreachable = (reason: string) =>
        new Cluster.SectorUnreachable({ sectorId, retryAfterMillis: options.retryAfterMillis, reason })
      const deadline = Duration.sum(wait, options.forwardTimeout)
      return call.pipe(
        Effect.catchIf(isClusterFailure, (error) => Effect.fail(unreachable(clusterReason(error)))),
        // the owner's handler was interrupted: its shard was force-released (the lock refresh failed: the database is
        // away) while it answered. An interruption of the caller would reach the HTTP server as a bare 503 with no
        // Retry-After; it is the sector's owner that could not answer, so say so like any other miss
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.fail(unreachable("its owner let it go before answering (its shard was released)"))
            : Effect.failCause(cause)
        ),
        Effect.timeoutOrElse({
          duration: deadline,
          orElse: () => Effect.fail(unreachable(`no answer from its owner within ${Duration.format(deadline)}`))
        }),
        Effect.onExit((exit) =>
          Metric.update(
            Metric.withAttributes(Cluster.forwarded, {
              rpc,
              outcome: Exit.isSuccess(exit)
                ? "ok"
                : Exit.hasInterrupts(exit) || Exit.findErrorOption(exit).pipe(Option.exists((e) => e instanceof Cluster.SectorUnreachable))
                ? "unreachable"
                : "error"
            }),
            1
          )
        )
      ) as Effect.Effect<A, Exclude<E2, ClusterFailure> | Cluster.SectorUnreachable | Errors.ShuttingDown>
    }

    return Sectors.of({
      submit: (sectorId, ops, submitOptions) => {
        const wait = Duration.sum(submitOptions.mailboxWait, submitOptions.durableTimeout ?? Duration.zero)
        return forward(
          "Submit",
          sectorId,
          wait,
          makeClient(String(sectorId)).Submit({
            ops,
            ack: submitOptions.ack,
            mailboxWaitMillis: Duration.toMillis(submitOptions.mailboxWait),
            ...(submitOptions.durableTimeout === undefined
              ? {}
              : { durableTimeoutMillis: Duration.toMillis(submitOptions.durableTimeout) }),
            // the client's key, or one of our own for this request (a space cannot start a client's key, so ours
            // never meets one): the owner applies a resent submission once either way. Ours is never given to other
            // content, so it needs no hash of the ops as its fingerprint (no work per request); and it is remembered
            // only as long as this call may resend it (its deadline, twice over), not for the IDEMPOTENCY_TTL a
            // client's key gets: one key per forwarded request would otherwise crowd out clients' keys
            ...(submitOptions.idempotency === undefined
              ? {
                requestId: ` forwarded ${randomUUID()}`,
                fingerprint: "",
                keyTtlMillis: 2 * Duration.toMillis(Duration.sum(wait, options.forwardTimeout))
              }
              : { requestId: submitOptions.idempotency.key, fingerprint: submitOptions.idempotency.fingerprint })
          })
        )
      },
      trySubmit: () => undefined,
      trySubmitDurable: () => undefined,
      get: (sectorId, entity) => forward("Get", sectorId, Duration.zero, makeClient(String(sectorId)).Get({ entity })),
      stats: (sectorId) => forward("Stats", sectorId, Duration.zero, makeClient(String(sectorId)).Stats()),
      flush: (sectorId) => forward("Flush", sectorId, options.flushWait, makeClient(String(sectorId)).Flush()),
      deadLetters: (sectorId) => forward("DeadLetters", sectorId, Duration.zero, makeClient(String(sectorId)).DeadLetters()),
      mode: {
        _tag: "Cluster",
        view: view.pipe(Effect.mapError(unreadable)),
        ownerOf: (sectorId) =>
          Cluster.ownerOf(sectorId).pipe(Effect.provideContext(context), Effect.mapError(unreadable))
      },
      leave: Effect.suspend(() => {
        leaving = true
        return Scope.close(scope, Exit.void)
      })
    })
  }))
