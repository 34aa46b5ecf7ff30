/**
 * The host of many sectors, and their supervisor: sectors are virtual actors, activated (loaded and claimed) on
 * first use and kept in an `RcMap`; a sector nobody has used for `passivateAfter` is drained and deactivated. Each
 * sector restarts itself after a defect (see `Sector`).
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
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Option from "effect/Option"
import * as RcMap from "effect/RcMap"
import { type SectorFenced, ShuttingDown, type SinkError, SinkUnavailable } from "./Errors.ts"
import * as Metrics from "./Metrics.ts"
import type * as Op from "./Op.ts"
import * as Resilience from "./Resilience.ts"
import * as Sector from "./Sector.ts"
import { type DeadLetter, SectorSink } from "./SectorSink.ts"
import { SectorsConfig } from "./SectorsConfig.ts"
import type * as SectorState from "./SectorState.ts"

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

/** Failing to reach a sector: it could not be activated, or the host is shutting down. */
export type ActivationError = SinkUnavailable | ShuttingDown | SectorFenced

export class SectorHost extends Context.Service<SectorHost, {
  /** Submits ops to a sector, activating it if needed. See `Sector.submit`. */
  readonly submit: (
    sectorId: number,
    ops: ReadonlyArray<Op.Op>,
    options?: Sector.SubmitOptions
  ) => Effect.Effect<Sector.Accepted, Sector.SubmitError>
  /** Reads an entity (read-your-writes), activating the sector if needed. */
  readonly get: (
    sectorId: number,
    entity: number
  ) => Effect.Effect<Option.Option<SectorState.EntityView>, ActivationError>
  /** A sector's figures, activating it if needed. */
  readonly stats: (sectorId: number) => Effect.Effect<Sector.SectorStats, ActivationError>
  /** Waits until everything a sector accepted so far is durable; returns its watermark. */
  readonly flush: (sectorId: number) => Effect.Effect<number, ActivationError>
  /** The active sectors. */
  readonly list: Effect.Effect<ReadonlyArray<SectorSummary>>
  /** Entries of a sector the sink rejected for their data, with their errors (oldest first). */
  readonly deadLetters: (sectorId: number) => Effect.Effect<ReadonlyArray<DeadLetter>, SinkUnavailable>
  /** Stops intake, drains and flushes every sector within `shutdownTimeout`, and reports. Idempotent. */
  readonly shutdown: Effect.Effect<ShutdownReport>
  /** Whether new submissions are taken (false once shutdown began). */
  readonly accepting: () => boolean
  /** The circuit breaker around the sink. */
  readonly circuit: () => Resilience.CircuitStatus
  /** Accepted ops not yet durable, and the sectors holding them (synchronous, for a last report). */
  readonly unflushed: () => { readonly ops: number; readonly sectors: ReadonlyArray<number> }
}>()("@sectors/core/SectorHost") {}

const unavailable = (error: SinkError, retryBase: Duration.Duration) =>
  new SinkUnavailable({
    retryAfterMillis: Duration.toMillis(retryBase),
    reason: `cannot load sector: ${error.message}`
  })

/** Builds a host; needs a sink and the configuration, and owns the shared `Resilience`. */
export const make = Effect.gen(function*() {
  const config = yield* SectorsConfig
  const resilience = yield* Resilience.Resilience
  const sink = yield* SectorSink
  const clock = yield* Clock.Clock
  const registry = new Map<number, Sector.Sector>()
  let accepting = true

  const sectors = yield* RcMap.make({
    lookup: (sectorId: number) =>
      Effect.gen(function*() {
        const sector = yield* Sector.make(sectorId)
        registry.set(sectorId, sector)
        // runs after the sector's own drain finalizer (finalizers run in reverse order)
        yield* Effect.addFinalizer(() => Effect.sync(() => registry.delete(sectorId)))
        return sector
      }),
    idleTimeToLive: config.passivateAfter
  })

  /** Runs `f` with the sector, activating it; a sector fenced by another owner is dropped so the next call reloads. */
  const withSector = <A, E>(
    sectorId: number,
    f: (sector: Sector.Sector) => Effect.Effect<A, E>
  ): Effect.Effect<A, E | SinkUnavailable | ShuttingDown> =>
    Effect.suspend((): Effect.Effect<A, E | SinkUnavailable | ShuttingDown> => {
      if (!accepting) return Effect.fail(new ShuttingDown({}))
      return RcMap.get(sectors, sectorId).pipe(
        Effect.mapError((error) => unavailable(error, config.retryBase)),
        Effect.flatMap((sector) =>
          sector.phase() === "fenced"
            ? Effect.andThen(RcMap.invalidate(sectors, sectorId), f(sector))
            : f(sector)
        ),
        Effect.scoped
      )
    })

  const shutdownOnce = Effect.gen(function*() {
    accepting = false
    const startedAt = clock.currentTimeMillisUnsafe()
    const active = [...registry.values()]
    yield* Effect.forEach(active, (sector) => sector.drain, { concurrency: "unbounded", discard: true }).pipe(
      Effect.timeoutOption(config.shutdownTimeout)
    )
    const reports = yield* Effect.forEach(active, (sector) => sector.stop, { concurrency: "unbounded" })
    const report: ShutdownReport = {
      sectors: active.length,
      flushed: reports.reduce((sum, r) => sum + r.flushed, 0),
      unflushed: reports.reduce((sum, r) => sum + r.unflushed, 0),
      unflushedSectors: reports.filter((r) => r.unflushed > 0).map((r) => r.sectorId),
      durationMs: clock.currentTimeMillisUnsafe() - startedAt
    }
    yield* Metric.update(Metrics.shutdownFlushed, report.flushed)
    yield* Metric.update(Metrics.shutdownUnflushed, report.unflushed)
    yield* Metric.update(Metrics.shutdownSeconds, report.durationMs / 1000)
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
    submit: (sectorId, ops, options) => withSector(sectorId, (sector) => sector.submit(ops, options)),
    get: (sectorId, entity) => withSector(sectorId, (sector) => sector.get(entity)),
    stats: (sectorId) => withSector(sectorId, (sector) => sector.stats),
    flush: (sectorId) => withSector(sectorId, (sector) => sector.flush),
    list: Effect.suspend(() =>
      Effect.forEach([...registry.values()], (sector) =>
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
    deadLetters: (sectorId) =>
      resilience.retrying(sink.deadLetters(sectorId)).pipe(
        Effect.mapError((error) =>
          new SinkUnavailable({ retryAfterMillis: Duration.toMillis(config.retryBase), reason: error.message })
        )
      ),
    shutdown,
    accepting: () => accepting,
    circuit: resilience.status,
    unflushed: () => {
      let ops = 0
      const held: Array<number> = []
      for (const sector of registry.values()) {
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
