/**
 * The child process of the `footprint` suite (`Footprint.ts` starts it with `node --expose-gc`, so that a
 * measurement sees only a `SectorHost` and not the bench's own heap). It runs one probe on the PostgreSQL sink at
 * `DATABASE_URL` and prints its figures as one line `FOOTPRINT <json>` on stdout:
 *
 * - `idle`: `sectors` sectors, each given one small op (one entity, one small component) and flushed, then
 *   `global.gc()` and a settle; RSS and heapUsed before and after, then process CPU over `idleSeconds` with nothing
 *   to do. With `snapshotDir`, also a V8 heap snapshot before and after (`before.heapsnapshot`, `after.heapsnapshot`)
 *   for `HeapSummary`; writing one grows RSS, so the RSS figures of such a run are not reported.
 * - `active`: `sectors` sectors receiving a steady stream (`opsPerSecond` in all) for `loadSeconds`; RSS and
 *   heapUsed after a `global.gc()` in the middle of the load, against the same process before any sector existed.
 * - `entities`: one sector given `entities` entities (one small component each) and flushed: bytes per entity.
 *
 * Residency is configured so that nothing is evicted or passivated during a probe.
 */
import { SectorHost, SectorsConfig } from "@sectors/core"
import { SinkPg } from "@sectors/sink-pg"
import { Duration, Effect, Fiber, Layer, Logger, Redacted } from "effect"
import * as path from "node:path"
import * as v8 from "node:v8"

/** What a probe is asked to do (the process's single argument, as JSON). */
export type Probe =
  | { readonly _tag: "idle"; readonly sectors: number; readonly idleSeconds: number; readonly snapshotDir?: string | undefined }
  | { readonly _tag: "active"; readonly sectors: number; readonly opsPerSecond: number; readonly loadSeconds: number }
  | { readonly _tag: "entities"; readonly entities: number }

/** Memory of the process at one moment, in bytes. */
export interface Memory {
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
}

/** What a probe measured. */
export interface Measured {
  readonly probe: Probe
  /** Items the growth is divided by: sectors, or entities. */
  readonly count: number
  /** After a memory-reducing collection (see `settle`). */
  readonly before: Memory
  readonly after: Memory
  /** After plain full collections only: V8's young generation still at the size the set-up grew it to. */
  readonly beforePlain: Memory
  readonly afterPlain: Memory
  /** Seconds to submit and flush everything. */
  readonly setupSeconds: number
  /** Process CPU over the idle window, as a fraction of one core (`idle` only). */
  readonly idleCpuOfOneCore?: number | undefined
  /** Ops accepted during the load (`active` only). */
  readonly accepted?: number | undefined
}

const gc = (globalThis as {
  gc?: (options?: { type: "major"; execution: "sync"; flavor?: "regular" | "last-resort" }) => void
}).gc
const memory = (): Memory => {
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }
}
const pause = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

/** A few full collections with pauses in between (finalizers, weak callbacks), then a settle. */
const collect = Effect.gen(function*() {
  for (let i = 0; i < 4; i++) {
    gc!()
    yield* pause(100)
  }
  yield* pause(500)
})

/**
 * Two readings: after plain full collections (`collect`), then after memory-reducing ones — V8's "last resort"
 * collection, the one it runs under memory pressure, which also compacts the old generation and shrinks the young
 * one back from whatever size a burst of allocation grew it to. The second is what the sectors themselves hold; the
 * difference is the young generation's size, a per-process figure that does not grow with the number of sectors.
 */
const settle = Effect.gen(function*() {
  yield* collect
  const plain = memory()
  for (let i = 0; i < 2; i++) {
    gc!({ type: "major", execution: "sync", flavor: "last-resort" })
    yield* pause(100)
  }
  yield* pause(500)
  return { plain, reduced: memory() }
})

const smallOp = (sectorId: number) => ({ type: "set" as const, entity: 1, component: "position", data: { x: sectorId } })

/** Runs `probe` against a host on the sink at `url`. */
export const run = (url: string, probe: Probe) =>
  Effect.gen(function*() {
    const host = yield* SectorHost.SectorHost
    // warm up: the pool's connections, the statements, the code paths, so that "before" holds them already
    const warm = Array.from({ length: 64 }, (_, i) => -1 - i)
    yield* Effect.forEach(warm, (id) => host.submit(id, [smallOp(id)]), { concurrency: 64, discard: true })
    yield* Effect.forEach(warm, (id) => host.flush(id), { concurrency: 64, discard: true })
    const { plain: beforePlain, reduced: before } = yield* settle
    if (probe._tag === "idle" && probe.snapshotDir !== undefined) {
      v8.writeHeapSnapshot(path.join(probe.snapshotDir, "before.heapsnapshot"))
      yield* collect
    }
    const started = performance.now()
    const ids = (n: number) => Array.from({ length: n }, (_, i) => i)
    switch (probe._tag) {
      case "idle": {
        yield* Effect.forEach(ids(probe.sectors), (id) => host.submit(id, [smallOp(id)]), { concurrency: 64, discard: true })
        yield* Effect.forEach(ids(probe.sectors), (id) => host.flush(id), { concurrency: 64, discard: true })
        const setupSeconds = (performance.now() - started) / 1000
        const { plain: afterPlain, reduced: after } = yield* settle
        if (probe.snapshotDir !== undefined) v8.writeHeapSnapshot(path.join(probe.snapshotDir, "after.heapsnapshot"))
        const cpuBefore = process.cpuUsage()
        const wallBefore = performance.now()
        // one plain timer: the measurement must not wake the runtime
        yield* pause(probe.idleSeconds * 1000)
        const cpu = process.cpuUsage(cpuBefore)
        const idleCpuOfOneCore = (cpu.user + cpu.system) / 1000 / (performance.now() - wallBefore)
        return {
          probe,
          count: probe.sectors,
          before,
          after,
          beforePlain,
          afterPlain,
          setupSeconds,
          idleCpuOfOneCore
        } satisfies Measured
      }
      case "active": {
        const sectors = ids(probe.sectors)
        // every sector gets one op per tick; ticks are spaced so that all of them together make `opsPerSecond`
        const tickMillis = (1000 * probe.sectors) / probe.opsPerSecond
        let accepted = 0
        let tick = 0
        const producer = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
          const at = performance.now()
          tick++
          yield* Effect.forEach(sectors, (id) =>
            host.submit(id, [{ type: "set", entity: tick % 10, component: "position", data: { x: tick } }]).pipe(
              Effect.tap(() => Effect.sync(() => accepted++)),
              Effect.ignore
            ), { concurrency: 64, discard: true })
          yield* pause(Math.max(0, tickMillis - (performance.now() - at)))
        })))
        yield* pause((probe.loadSeconds * 1000) / 2)
        const setupSeconds = (performance.now() - started) / 1000
        const { plain: afterPlain, reduced: after } = yield* settle
        yield* pause((probe.loadSeconds * 1000) / 2)
        yield* Fiber.interrupt(producer)
        return { probe, count: probe.sectors, before, after, beforePlain, afterPlain, setupSeconds, accepted } satisfies Measured
      }
      case "entities": {
        const chunk = 1_000
        for (let from = 0; from < probe.entities; from += chunk) {
          const ops = Array.from({ length: Math.min(chunk, probe.entities - from) }, (_, i) => ({
            type: "set" as const,
            entity: from + i,
            component: "position",
            data: { x: from + i }
          }))
          yield* host.submit(0, ops, { mailboxWait: Duration.seconds(10) })
        }
        yield* host.flush(0)
        const setupSeconds = (performance.now() - started) / 1000
        const { plain: afterPlain, reduced: after } = yield* settle
        return { probe, count: probe.entities, before, after, beforePlain, afterPlain, setupSeconds } satisfies Measured
      }
    }
  }).pipe(
    Effect.provide(
      SectorHost.layer.pipe(
        Layer.provideMerge(SinkPg.layer(Redacted.make(url), { client: { maxConnections: 10, applicationName: "bench-footprint" } })),
        Layer.provide(SectorsConfig.layer({
          // nothing is evicted or passivated while the probe runs
          maxActiveSectors: 1_000_000,
          passivateAfter: Duration.hours(24)
        }))
      )
    ),
    Effect.scoped,
    Effect.provide(Logger.layer([]))
  )

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  if (gc === undefined) {
    console.error("footprint probe: start node with --expose-gc")
    process.exit(2)
  }
  const url = process.env.DATABASE_URL
  if (url === undefined) {
    console.error("footprint probe: DATABASE_URL is not set")
    process.exit(2)
  }
  const probe = JSON.parse(process.argv[2] ?? "{}") as Probe
  Effect.runPromise(run(url, probe)).then(
    (measured) => {
      console.log(`FOOTPRINT ${JSON.stringify(measured)}`)
      process.exit(0)
    },
    (error) => {
      console.error(`footprint probe: ${String(error)}`)
      process.exit(1)
    }
  )
}
