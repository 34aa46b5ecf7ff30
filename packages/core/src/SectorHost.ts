/**
 * The host of many sectors, and their supervisor: sectors are virtual actors, activated (loaded and claimed) by
 * the first write, kept resident under a hard cap (`maxActiveSectors`, least recently used idle sectors make room),
 * and passivated once unused for `passivateAfter` with nothing left to flush. Reads of a sector that is not
 * resident go to the sink without a claim, so a read never creates durable state or fences an owner. Each sector
 * restarts itself after a defect (see `Sector`); the rules of a sector's lifetime live in `internal/residency`.
 *
 * `shutdown` — also run when the host's scope closes — stops in order: intake stops (`ShuttingDown` for every new
 * submission), every sector drains its mailbox and flushes everything, all sectors in parallel, within
 * `shutdownTimeout`; what could not be flushed in time is reported, never silently dropped. The report
 * `{ sectors, flushed, unflushed, durationMs }` is logged and returned.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import type { DataLengths } from "./Batch.ts"
import type { ResidencyFull, SectorFenced, ShuttingDown, SinkError } from "./Errors.ts"
import { SinkUnavailable } from "./Errors.ts"
import { Budget } from "./internal/budget.ts"
import { IdempotencyStore } from "./internal/idempotency.ts"
import * as Residency from "./internal/residency.ts"
import { withOutcome } from "./internal/tracing.ts"
import * as Metrics from "./Metrics.ts"
import type * as Op from "./Op.ts"
import * as Resilience from "./Resilience.ts"
import * as Sector from "./Sector.ts"
import { type DeadLetter, type LoadedSector, SectorSink } from "./SectorSink.ts"
import { SectorsConfig } from "./SectorsConfig.ts"
import * as SectorState from "./SectorState.ts"

/** What a host shutdown achieved. */
export interface ShutdownReport {
  /** Sectors that were active. */
  readonly sectors: number
  /** Ops made durable during the shutdown. */
  readonly flushed: number
  /** Accepted ops that were not durable when the shutdown ended (0 unless the sink was failing). */
  readonly unflushed: number
  /** Sectors that still held unflushed ops. */
  readonly unflushedSectors: ReadonlyArray<number>
  readonly durationMs: number
}

/** One line per active sector, for listings. */
export interface SectorSummary {
  readonly sectorId: number
  readonly phase: Sector.Phase
  readonly lastSeq: number
  readonly persistedSeq: number
  readonly pendingOps: number
  readonly mailboxDepth: number
  readonly entities: number
}

/** Failing to reach a sector: it could not be activated (or read), there is no room, or the host is stopping. */
export type ActivationError = SinkUnavailable | ShuttingDown | SectorFenced | ResidencyFull

/** Accepted, not yet durable data held, against the budget. */
export interface BufferStatus {
  readonly bufferedBytes: number
  readonly budgetBytes: number
  /** The budget is spent: 95 % or more of it held, or submissions refused (`BufferFull`) until 10 % is freed. */
  readonly full: boolean
}

/** How many sectors live here, against the cap. */
export interface ResidencyStatus {
  /** Sectors activating, resident or passivating. */
  readonly active: number
  readonly maxActiveSectors: number
}

export class SectorHost extends Context.Service<SectorHost, {
  /**
   * Submits ops to a sector, activating (and claiming) it if needed. See `Sector.submit`. Traced as
   * `SectorHost.submit` (`sector.id`, `submit.ops`, `submit.ack`, `outcome`) when the caller runs inside a span
   * (a traced request, say; an untraced caller pays nothing for it); each batch as `Sector.persist`.
   */
  readonly submit: (
    sectorId: number,
    ops: ReadonlyArray<Op.Op>,
    options?: Sector.SubmitOptions
  ) => Effect.Effect<Sector.Accepted, Sector.SubmitError | ResidencyFull | SinkUnavailable>
  /**
   * Submits ops with an accepted ack and no idempotency key at once, synchronously, when the sector is resident,
   * awake and free and has room (`Sector.tryAccept`): the answer `submit` would give, without an effect. `undefined`
   * when it cannot — nothing was applied: `submit` them. For a transport that handles many small submissions in a
   * loop of its own (`/ingest`); not traced. `dataLengths`: each op's `JSON.stringify(data)` length where the caller
   * knows it exactly (it read the op from such text), so that it is not measured again (`Batch.cellBytes`).
   */
  readonly trySubmit: (
    sectorId: number,
    ops: ReadonlyArray<Op.Op>,
    dataLengths?: DataLengths
  ) => Exit.Exit<Sector.Accepted> | undefined
  /**
   * `trySubmit` with a durable ack (`Sector.tryAcceptDurable`): the ops accepted at once when `trySubmit` would take
   * them (`undefined` otherwise: nothing applied, `onDurable` never called), then `onDurable` called once with what
   * `submit` with `ack: "durable"` answers — unless the returned `cancel` comes first. No fiber waits: the wait is a
   * callback on the sector's watermark. `onDurable` must not throw.
   */
  readonly trySubmitDurable: (
    sectorId: number,
    ops: ReadonlyArray<Op.Op>,
    options: {
      readonly dataLengths?: DataLengths | undefined
      readonly timeout?: Duration.Input | undefined
      readonly onDurable: (exit: Exit.Exit<Sector.Accepted, Sector.DurableWaitError>) => void
    }
  ) => Exit.Exit<() => void> | undefined
  /**
   * Reads an entity: from memory if the sector is resident (read-your-writes), otherwise from the sink without
   * claiming or activating it.
   */
  readonly get: (
    sectorId: number,
    entity: number
  ) => Effect.Effect<Option.Option<SectorState.EntityView>, ActivationError>
  /** A sector's figures: live if resident, otherwise its durable figures (phase `passive`). Never activates. */
  readonly stats: (sectorId: number) => Effect.Effect<Sector.SectorStats, ActivationError>
  /**
   * Waits until everything a sector accepted so far is durable; returns its watermark. Never activates. Fails with
   * `SectorFenced` when the sector's instance here was fenced with ops it had accepted (they are lost); the next
   * request loads it anew.
   */
  readonly flush: (sectorId: number) => Effect.Effect<number, ActivationError>
  /** The sectors living here, least recently used first. */
  readonly list: Effect.Effect<ReadonlyArray<SectorSummary>>
  /** How many sectors live here, against the cap. */
  readonly residency: () => ResidencyStatus
  /** Bytes of accepted, not yet durable data held, against the budget (`maxBufferedBytes`). */
  readonly buffer: () => BufferStatus
  /** Entries of a sector the sink rejected for their data, with their errors (oldest first). */
  readonly deadLetters: (sectorId: number) => Effect.Effect<ReadonlyArray<DeadLetter>, SinkUnavailable>
  /**
   * Lets a sector go from this host — its shard moved to another (`Cluster`): drains its mailbox and flushes
   * everything, then drops it; a later request activates it anew (a claim of its own).
   *
   * **Gotchas** there is no deadline: while the database is away it keeps retrying, because the next owner's claim
   * would fence whatever is left. Bound it from outside only where giving up is reported (`shutdown`).
   */
  readonly release: (sectorId: number) => Effect.Effect<void>
  /** Stops intake, drains and flushes every sector within `shutdownTimeout`, and reports. Idempotent. */
  readonly shutdown: Effect.Effect<ShutdownReport>
  /** Whether new submissions are taken (false once shutdown began). */
  readonly accepting: () => boolean
  /** The circuit breaker around the sink. */
  readonly circuit: () => Resilience.CircuitStatus
  /** Whether the sink answers persists, and since when it has not. */
  readonly sinkHealth: () => Resilience.SinkHealth
  /** Accepted ops not yet durable, and the sectors holding them (synchronous, for a last report). */
  readonly unflushed: () => { readonly ops: number; readonly sectors: ReadonlyArray<number> }
}>()("@sectors/core/SectorHost") {}

/** The figures of a sector that is not resident, from what the sink holds. */
const passiveStats = (config: SectorsConfig["Service"], loaded: LoadedSector): Sector.SectorStats => ({
  sectorId: loaded.sectorId,
  phase: "passive",
  epoch: loaded.epoch,
  mailboxDepth: 0,
  mailboxCapacity: config.mailboxCapacity,
  pendingOps: 0,
  pendingKeys: 0,
  maxPendingKeys: config.policy.maxPendingKeys,
  oldestPendingMillis: 0,
  inFlightOps: 0,
  lastSeq: loaded.persistedSeq,
  persistedSeq: loaded.persistedSeq,
  persistedAt: loaded.persistedAt,
  entities: new Set(loaded.rows.components.map((row) => row.entity).concat(loaded.rows.authority.map((row) => row.entity)))
    .size,
  awake: false,
  counters: { received: 0, persisted: 0, collapsed: 0, batches: 0, deadLetters: 0, restarts: 0, timerWakeups: 0 }
})

/** Builds a host; needs a sink and the configuration, and owns the shared `Resilience`. */
export const make = Effect.gen(function*() {
  const config = yield* SectorsConfig
  const resilience = yield* Resilience.Resilience
  const sink = yield* SectorSink
  const clock = yield* Clock.Clock
  const services = yield* Effect.context<SectorSink | SectorsConfig | Resilience.Resilience>()
  const retryAfterMillis = Duration.toMillis(config.retryBase)
  yield* Metrics.register // every series from zero, before the budget and the sectors update theirs
  const budget = new Budget(config.maxBufferedBytes, yield* Effect.context<never>())
  const idempotency = new IdempotencyStore({
    ttlMillis: Duration.toMillis(config.idempotencyTtl),
    maxKeys: config.maxIdempotencyKeys
  })

  const sectors = yield* Effect.provideContext(Sector.runtime({ budget, idempotency }), services)
  const residency = yield* Residency.make({
    maxActive: config.maxActiveSectors,
    passivateAfter: config.passivateAfter,
    shutdownTimeout: config.shutdownTimeout,
    retryAfterMillis: Math.max(retryAfterMillis, Duration.toMillis(config.mailboxRetryAfter)),
    activate: sectors.activate
  })

  const unavailable = (error: SinkError) =>
    Effect.logWarning(`cannot read from the sink: ${error.message}`).pipe(
      Effect.andThen(Effect.fail(new SinkUnavailable({ retryAfterMillis, reason: "the database is unavailable" })))
    )

  /** The durable state of a sector that is not resident, without a claim. */
  const read = (sectorId: number) => resilience.retrying(sink.read(sectorId)).pipe(Effect.catch(unavailable))

  const shutdownOnce = Effect.gen(function*() {
    const startedAt = clock.currentTimeMillisUnsafe()
    const { reports } = yield* residency.shutdown
    const report: ShutdownReport = {
      sectors: reports.length,
      flushed: reports.reduce((sum, r) => sum + r.flushed, 0),
      unflushed: reports.reduce((sum, r) => sum + r.unflushed, 0),
      unflushedSectors: reports.filter((r) => r.unflushed > 0).map((r) => r.sectorId),
      durationMs: clock.currentTimeMillisUnsafe() - startedAt
    }
    yield* Metric.update(Metrics.shutdownFlushed, report.flushed)
    yield* Metric.update(Metrics.shutdownUnflushed, report.unflushed)
    yield* Metric.update(Metrics.shutdownSeconds, report.durationMs / 1000)
    yield* Metric.update(Metrics.shutdownsBy[report.unflushed === 0 ? "success" : "failure"], 1)
    yield* Metric.update(Metrics.opsLostBy.shutdown, report.unflushed)
    const line = `shutdown: ${report.sectors} sectors, ${report.flushed} ops flushed, ${report.unflushed} unflushed, ` +
      `${report.durationMs} ms`
    yield* (report.unflushed > 0 ? Effect.logWarning(line) : Effect.logInfo(line)).pipe(
      Effect.annotateLogs({ report })
    )
    return report
  })
  const shutdown = yield* Effect.cached(shutdownOnce)
  yield* Effect.addFinalizer(() => shutdown)

  return SectorHost.of({
    submit: (sectorId, ops, options) => {
      const submitted = residency.use(sectorId, (sector) => sector.submit(ops, options))
      // a span only inside the caller's trace: an untraced caller pays nothing (a span is ~6 µs a submission)
      return Effect.withFiber((fiber) =>
        Context.getOrUndefined(fiber.context, Tracer.ParentSpan) === undefined ? submitted : submitted.pipe(
          withOutcome,
          Effect.withSpan("SectorHost.submit", {
            attributes: { "sector.id": sectorId, "submit.ops": ops.length, "submit.ack": options?.ack ?? "accepted" }
          }, { captureStackTrace: false }) // one per submission: no `Error` a call to capture its stack
        )
      )
    },
    trySubmit: (sectorId, ops, dataLengths) => residency.residentNow(sectorId)?.tryAccept(ops, dataLengths),
    trySubmitDurable: (sectorId, ops, options) => residency.residentNow(sectorId)?.tryAcceptDurable(ops, options),
    get: (sectorId, entity) =>
      residency.peek(sectorId, (resident) =>
        Option.isSome(resident)
          ? resident.value.get(entity)
          : Effect.map(read(sectorId), (loaded) => {
            const rows = {
              components: loaded.rows.components.filter((row) => row.entity === entity),
              authority: loaded.rows.authority.filter((row) => row.entity === entity)
            }
            return Option.fromUndefinedOr(SectorState.view(SectorState.fromRows(rows), entity))
          })),
    stats: (sectorId) =>
      residency.peek(sectorId, (resident) =>
        Option.isSome(resident)
          ? resident.value.stats
          : Effect.map(read(sectorId), (loaded) => passiveStats(config, loaded))),
    flush: (sectorId) =>
      // a fenced instance still here answers SectorFenced: what it accepted was lost, whatever the owner's watermark
      residency.peek(sectorId, (resident): Effect.Effect<number, ActivationError> =>
        Option.isSome(resident)
          ? resident.value.flush
          : Effect.map(read(sectorId), (loaded) => loaded.persistedSeq), "resident"),
    list: Effect.suspend(() =>
      Effect.forEach(residency.sectors(), (sector) =>
        Effect.map(sector.stats, (stats): SectorSummary => ({
          sectorId: stats.sectorId,
          phase: stats.phase,
          lastSeq: stats.lastSeq,
          persistedSeq: stats.persistedSeq,
          pendingOps: stats.pendingOps + stats.inFlightOps,
          mailboxDepth: stats.mailboxDepth,
          entities: stats.entities
        })))
    ),
    residency: () => ({ active: residency.size(), maxActiveSectors: residency.maxActive }),
    buffer: () => ({ bufferedBytes: budget.used, budgetBytes: budget.max, full: budget.full }),
    deadLetters: (sectorId) =>
      resilience.retrying(sink.deadLetters(sectorId)).pipe(
        Effect.mapError((error) => new SinkUnavailable({ retryAfterMillis, reason: error.message }))
      ),
    release: residency.handOff,
    shutdown,
    accepting: residency.accepting,
    circuit: resilience.status,
    sinkHealth: resilience.health,
    unflushed: () => {
      let ops = 0
      const held: Array<number> = []
      for (const sector of residency.sectors()) {
        const count = sector.unflushed()
        if (count > 0) {
          ops += count
          held.push(sector.sectorId)
        }
      }
      return { ops, sectors: held }
    }
  })
})

/** A host on the given sink and configuration, with its own `Resilience` (also provided). */
export const layer: Layer.Layer<SectorHost | Resilience.Resilience, never, SectorSink | SectorsConfig> = Layer
  .effect(SectorHost, make).pipe(Layer.provideMerge(Resilience.layer))
