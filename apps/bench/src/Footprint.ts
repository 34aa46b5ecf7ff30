/**
 * What a sector costs in memory (issue 19): each probe of `FootprintProbe` runs in a child `node --expose-gc`
 * process of its own (started with effect's `ChildProcess`, the Node spawner comes from `main.ts`) on a fresh
 * database of the bench's PostgreSQL, so that neither the bench's heap nor an earlier probe's garbage is counted.
 *
 * - bytes per idle resident sector: RSS and heap growth over `idleSectors` sectors (one small entity each, flushed,
 *   after `global.gc()`), divided by their number; and the process CPU over `idleSeconds` with them all idle;
 * - bytes per active sector: `activeSectors` sectors receiving `activeOpsPerSecond` in all;
 * - bytes per entity of state: one sector holding `entities` entities;
 * - where the bytes go: a V8 heap snapshot before and after `snapshotSectors` idle sectors, summed by kind
 *   (`HeapSummary`) and divided by their number.
 */
import { PgEmbedded } from "@sectors/pg-embedded"
import { Effect, Redacted, Stream } from "effect"
import { ChildProcess } from "effect/process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type * as FootprintProbe from "./FootprintProbe.ts"
import * as HeapSummary from "./HeapSummary.ts"

const probeEntry = fileURLToPath(new URL("./FootprintProbe.ts", import.meta.url))

/** What to measure. */
export interface Options {
  readonly idleSectors: ReadonlyArray<number>
  readonly idleSeconds: number
  readonly activeSectors: number
  readonly activeOpsPerSecond: number
  readonly activeSeconds: number
  readonly entities: number
  /** Idle sectors of the heap-snapshot run; 0: no snapshot. */
  readonly snapshotSectors: number
  /** Kinds listed from the snapshot, largest first. */
  readonly topKinds: number
}

/** The sizes. */
export const standard: Options = {
  idleSectors: [20_000, 100_000],
  idleSeconds: 10,
  activeSectors: 1_000,
  activeOpsPerSecond: 10_000,
  activeSeconds: 10,
  entities: 100_000,
  snapshotSectors: 20_000,
  topKinds: 30
}

/**
 * The parts of a sector whose retained size the snapshot run reports: what would go if they were not allocated
 * while the sector is idle (bytes only reachable through them).
 */
export const groups: ReadonlyArray<HeapSummary.Group> = [
  { name: "everything of the sector (its residency slot)", matches: (k) => k.startsWith("Object {_tag, sector") },
  { name: "the sector (SectorActor: its fields and counters, not its state)", matches: (k) => k === "SectorActor" },
  { name: "fibers (FiberImpl; an idle sector should have none)", matches: (k) => k === "FiberImpl" },
  { name: "runs (Run: mailbox, wake-up; an idle sector should have none)", matches: (k) => k === "Run" },
  { name: "Backlog", matches: (k) => k === "Backlog" },
  { name: "Watermark", matches: (k) => k === "Watermark" },
  { name: "Deferreds", matches: (k) => k === "DeferredImpl" },
  { name: "SectorState (entities map and rows)", matches: (k) => k.startsWith("Object {entities}") }
]

/** Everything the suite measured. */
export interface Result {
  /** Load average (1, 5, 15 min) when the suite started: the machine may be shared. */
  readonly loadAverage: ReadonlyArray<number>
  readonly idle: ReadonlyArray<FootprintProbe.Measured>
  readonly active: FootprintProbe.Measured
  readonly entities: FootprintProbe.Measured
  readonly snapshot?: {
    readonly sectors: number
    /** Heap growth per sector according to the snapshots (sum of self sizes). */
    readonly bytesPerSector: number
    /** Per sector by V8 node category: objects, closures, closure contexts, arrays, hidden classes, code… */
    readonly categories: ReadonlyArray<HeapSummary.Kind>
    /** Per sector, what each of `groups` retains (bytes only reachable through its nodes). */
    readonly retained: ReadonlyArray<HeapSummary.Kind>
    readonly top: ReadonlyArray<HeapSummary.Kind>
  } | undefined
}

/** Runs one probe in a child process on a fresh database; fails with its output unless it prints its figures. */
const probe = (serverUrl: Redacted.Redacted<string>, request: FootprintProbe.Probe) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_footprint")
    const child = yield* ChildProcess.make(process.execPath, ["--expose-gc", probeEntry, JSON.stringify(request)], {
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: Redacted.value(url) },
      stdin: "ignore",
      detached: false,
      killSignal: "SIGKILL"
    })
    const [stdout, stderr, exitCode] = yield* Effect.all([
      child.stdout.pipe(Stream.decodeText(), Stream.mkString),
      child.stderr.pipe(Stream.decodeText(), Stream.mkString),
      child.exitCode
    ], { concurrency: "unbounded" })
    const line = stdout.split("\n").find((l) => l.startsWith("FOOTPRINT "))
    if (exitCode !== 0 || line === undefined) {
      return yield* Effect.fail(new Error(`footprint probe ${request._tag} exited with ${exitCode}:\n${stderr.slice(-2000)}`))
    }
    return JSON.parse(line.slice("FOOTPRINT ".length)) as FootprintProbe.Measured
  }).pipe(Effect.scoped)

/** Runs every probe, one after the other. */
export const run = (
  serverUrl: Redacted.Redacted<string>,
  options: Options,
  log: (message: string) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const loadAverage = os.loadavg()
    const idle: Array<FootprintProbe.Measured> = []
    for (const sectors of options.idleSectors) {
      yield* log(`footprint: ${sectors} idle sectors`)
      idle.push(yield* probe(serverUrl, { _tag: "idle", sectors, idleSeconds: options.idleSeconds }))
    }
    yield* log(`footprint: ${options.activeSectors} active sectors`)
    const active = yield* probe(serverUrl, {
      _tag: "active",
      sectors: options.activeSectors,
      opsPerSecond: options.activeOpsPerSecond,
      loadSeconds: options.activeSeconds
    })
    yield* log(`footprint: one sector of ${options.entities} entities`)
    const entities = yield* probe(serverUrl, { _tag: "entities", entities: options.entities })
    let snapshot: Result["snapshot"]
    if (options.snapshotSectors > 0) {
      yield* log(`footprint: heap snapshots around ${options.snapshotSectors} idle sectors`)
      const dir = yield* Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "sectors-footprint-")))
      snapshot = yield* Effect.gen(function*() {
        yield* probe(serverUrl, { _tag: "idle", sectors: options.snapshotSectors, idleSeconds: 0, snapshotDir: dir })
        const before = yield* Effect.promise(() => HeapSummary.summarize(path.join(dir, "before.heapsnapshot"), groups))
        const after = yield* Effect.promise(() => HeapSummary.summarize(path.join(dir, "after.heapsnapshot"), groups))
        const kinds = HeapSummary.diff(before.kinds, after.kinds, options.snapshotSectors)
        return {
          sectors: options.snapshotSectors,
          bytesPerSector: kinds.reduce((sum, k) => sum + k.bytes, 0),
          categories: HeapSummary.diff(before.categories, after.categories, options.snapshotSectors),
          retained: groups.map((group) => {
            const a = after.retained.get(group.name) ?? { bytes: 0, count: 0 }
            const b = before.retained.get(group.name) ?? { bytes: 0, count: 0 }
            return {
              kind: group.name,
              bytes: (a.bytes - b.bytes) / options.snapshotSectors,
              count: (a.count - b.count) / options.snapshotSectors
            }
          }),
          top: kinds.slice(0, options.topKinds)
        }
      }).pipe(Effect.ensuring(Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))))
    }
    return { loadAverage, idle, active, entities, snapshot } satisfies Result
  })

/** Growth per item of a probe, in bytes. */
export const perItem = (m: FootprintProbe.Measured) => ({
  rss: (m.after.rss - m.before.rss) / m.count,
  rssPlain: (m.afterPlain.rss - m.beforePlain.rss) / m.count,
  heap: (m.after.heapUsed - m.before.heapUsed) / m.count
})
