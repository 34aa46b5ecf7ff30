/**
 * What idle sectors cost: activate many sectors (one op each), let everything flush, then watch the process for a
 * while with nothing to do. Reports the CPU it used (fraction of one core), the timers started and fired in that
 * window (every sleep of the runtime goes through a counting clock) and the flusher timer wakeups metric. The goal
 * is no CPU to speak of and zero wakeups: an idle sector waits on its mailbox with no timer armed.
 */
import { Metrics, SectorHost, SectorsConfig } from "@sectors/core"
import { CountingClock } from "@sectors/core/testing"
import { PgEmbedded } from "@sectors/pg-embedded"
import { SinkPg } from "@sectors/sink-pg"
import { Clock, Duration, Effect, Layer, Logger, Metric, type Redacted } from "effect"

/** What the idle window showed. */
export interface Result {
  readonly sectors: number
  readonly seconds: number
  /** Process CPU over the idle window, as a fraction of one core. */
  readonly cpuOfOneCore: number
  readonly timersStarted: number
  readonly timersFired: number
  readonly flusherWakeups: number
  readonly rssMiB: number
  readonly activationSeconds: number
}

/** Activates `sectors` sectors, flushes them, then measures `seconds` of idleness. */
export const run = (serverUrl: Redacted.Redacted<string>, options: { readonly sectors: number; readonly seconds: number }) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_idle")
    const counting = CountingClock.counting(yield* Clock.Clock)
    const app = SectorHost.layer.pipe(
      Layer.provideMerge(SinkPg.layer(url, { client: { maxConnections: 10, applicationName: "bench-idle" } })),
      Layer.provide(SectorsConfig.layer())
    )
    return yield* Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const activationStart = performance.now()
      yield* Effect.forEach(
        Array.from({ length: options.sectors }, (_, i) => i),
        (sectorId) => host.submit(sectorId, [{ type: "set", entity: 1, component: "position", data: { x: sectorId } }]),
        { concurrency: 64, discard: true }
      )
      yield* Effect.forEach(Array.from({ length: options.sectors }, (_, i) => i), (id) => host.flush(id), {
        concurrency: 64,
        discard: true
      })
      const activationSeconds = (performance.now() - activationStart) / 1000
      yield* Effect.sleep(Duration.seconds(1)) // let the last flushes settle
      counting.reset()
      const wakeupsBefore = (yield* Metric.value(Metrics.timerWakeups)).count
      const cpuBefore = process.cpuUsage()
      const wallBefore = performance.now()
      // the measurement itself must not wake the process: one plain timeout, not the runtime's clock
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, options.seconds * 1000)))
      const cpu = process.cpuUsage(cpuBefore)
      const wall = performance.now() - wallBefore
      const counts = counting.counts()
      const result: Result = {
        sectors: options.sectors,
        seconds: options.seconds,
        cpuOfOneCore: (cpu.user + cpu.system) / 1000 / wall,
        timersStarted: counts.started,
        timersFired: counts.fired,
        flusherWakeups: (yield* Metric.value(Metrics.timerWakeups)).count - wakeupsBefore,
        rssMiB: process.memoryUsage.rss() / 2 ** 20,
        activationSeconds
      }
      yield* host.shutdown
      return result
    }).pipe(Effect.provide(app), Effect.provideService(Clock.Clock, counting.clock))
  }).pipe(Effect.scoped, Effect.provide(Logger.layer([])))
