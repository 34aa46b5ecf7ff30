/**
 * The field report's workloads, run in-process against a `SectorHost`: many sectors, entities with hot keys (in each
 * sector 10 entities — players, say — take 60 % of the writes, mostly position and velocity), mostly `set`s with some
 * authority changes, removes and deletes.
 *
 * - `sustained`: 10 000 ops/s;
 * - `bursty`: 5 000 ops/s for 10 s, then 100 ops/s for 10 s, repeating;
 * - `sporadic`: a handful of ops every few seconds;
 * - `ramp`: from 10 ops/s, +100 ops/s every 30 s, up to 5 000.
 *
 * `npm start -- --simulate <scenario>` drives the running host and prints one summary line per second: ops/s
 * accepted and persisted, batches/s, mean batch, collapse %, commits/s, and p99 op→durable latency (sampled with
 * durable acks). `drive` is also what the benchmarks use.
 */
import { type Op, Metrics, SectorHost } from "@sectors/core"
import { SinkPg } from "@sectors/sink-pg"
import { Duration, Effect, Metric } from "effect"

/** The workloads. */
export const scenarios = ["sustained", "bursty", "sporadic", "ramp"] as const

/** A workload's name. */
export type Scenario = (typeof scenarios)[number]

/** The shape of a load. */
export interface Workload {
  /** Offered ops per second at `t` seconds from the start. */
  readonly rate: (t: number) => number
  readonly sectors: number
  readonly entitiesPerSector: number
}

/** The field report's test matrix. */
export const workloads: Readonly<Record<Scenario, Workload>> = {
  sustained: { rate: () => 10_000, sectors: 50, entitiesPerSector: 500 },
  bursty: { rate: (t) => (Math.floor(t / 10) % 2 === 0 ? 5_000 : 100), sectors: 50, entitiesPerSector: 500 },
  sporadic: { rate: (t) => (Math.floor(t) % 3 === 0 ? 5 : 0), sectors: 50, entitiesPerSector: 500 },
  ramp: { rate: (t) => Math.min(5_000, 10 + 100 * Math.floor(t / 30)), sectors: 50, entitiesPerSector: 500 }
}

/** Entities per sector that take most of the writes. */
const hotEntities = 10

/** A small deterministic generator (mulberry32), so that runs are repeatable. */
export const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Draws ops: hot keys, mostly sets. */
export const opSource = (workload: Workload, seed = 1) => {
  const next = random(seed)
  const hot = Math.min(hotEntities, workload.entitiesPerSector)
  const entity = () => next() < 0.6 ? Math.floor(next() * hot) : Math.floor(next() * workload.entitiesPerSector)
  const component = () => {
    const r = next()
    return r < 0.6 ? "position" : r < 0.9 ? "velocity" : "hp"
  }
  return {
    sector: () => Math.floor(next() * workload.sectors),
    op: (): Op.Op => {
      const r = next()
      if (r < 0.93) {
        return { type: "set", entity: entity(), component: component(), data: { x: Math.round(next() * 1000), y: Math.round(next() * 1000) } }
      }
      if (r < 0.97) return { type: "authority", entity: entity(), component: component(), worker: `w-${Math.floor(next() * 8)}` }
      if (r < 0.99) return { type: "remove", entity: entity(), component: component() }
      return { type: "delete", entity: entity() }
    }
  }
}

/** What one second of a run looked like. */
export interface Second {
  readonly second: number
  readonly offered: number
  readonly accepted: number
  readonly refused: number
  readonly persisted: number
  readonly batches: number
  readonly collapsed: number
  readonly commits: number
  /** Sampled op→durable latencies (ms) of this second. */
  readonly durableMillis: ReadonlyArray<number>
}

const counter = (metric: typeof Metrics.opsReceived) => Effect.map(Metric.value(metric), (state) => state.count)

/** The counters a `Second` reports the growth of, as they stand. */
const totals = Effect.all({
  persisted: counter(Metrics.opsPersisted),
  batches: counter(Metrics.batches),
  collapsed: counter(Metrics.opsCollapsed),
  commits: counter(SinkPg.transactions)
})

/**
 * Offers `workload` to the host in 10 ms ticks (one submission per sector and tick, 1 in `durableSample` of them
 * with a durable ack to time op→durable), calling `onSecond` once a second, for `duration` (forever if omitted).
 */
export const drive = (
  workload: Workload,
  options: {
    readonly duration?: Duration.Input | undefined
    readonly onSecond?: ((second: Second) => Effect.Effect<void>) | undefined
    readonly durableSample?: number | undefined
    readonly seed?: number | undefined
    /** Hears every submission as it is offered (ms since the start). */
    readonly onSubmit?: ((sectorId: number, ops: ReadonlyArray<Op.Op>, atMillis: number) => void) | undefined
  } = {}
) =>
  Effect.gen(function*() {
    const host = yield* SectorHost.SectorHost
    const source = opSource(workload, options.seed ?? 1)
    const sample = options.durableSample ?? 20
    const tickMillis = 10
    const end = options.duration === undefined ? Number.POSITIVE_INFINITY : Duration.toMillis(Duration.fromInputUnsafe(options.duration))
    const start = performance.now()
    let carry = 0
    let submissions = 0
    let current = { offered: 0, accepted: 0, refused: 0, durableMillis: [] as Array<number> }
    let second = 0
    let last = yield* totals
    let inFlight = 0

    /** Reports what happened since the last report, as of `at` seconds. */
    const emit = (at: number) =>
      Effect.gen(function*() {
        const now = yield* totals
        const report: Second = {
          second: at,
          offered: current.offered,
          accepted: current.accepted,
          refused: current.refused,
          persisted: now.persisted - last.persisted,
          batches: now.batches - last.batches,
          collapsed: now.collapsed - last.collapsed,
          commits: now.commits - last.commits,
          durableMillis: current.durableMillis
        }
        last = now
        second = Math.floor(at)
        current = { offered: 0, accepted: 0, refused: 0, durableMillis: [] }
        if (options.onSecond) yield* options.onSecond(report)
      })

    let previous = performance.now()
    while (performance.now() - start < end) {
      const now = performance.now()
      // what the rate asks for since the last tick, however long the tick really was
      carry += workload.rate((now - start) / 1000) * (now - previous) / 1000
      previous = now
      const count = Math.floor(carry)
      carry -= count
      const bySector = new Map<number, Array<Op.Op>>()
      for (let i = 0; i < count; i++) {
        const sector = source.sector()
        const list = bySector.get(sector)
        if (list === undefined) bySector.set(sector, [source.op()])
        else list.push(source.op())
      }
      current.offered += count
      for (const [sectorId, ops] of bySector) {
        const durable = ++submissions % sample === 0
        const submittedAt = performance.now()
        options.onSubmit?.(sectorId, ops, submittedAt - start)
        const tally = current
        inFlight++
        yield* host.submit(sectorId, ops, durable ? { ack: "durable" } : undefined).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              tally.accepted += ops.length
              if (durable) tally.durableMillis.push(performance.now() - submittedAt)
            })
          ),
          Effect.catch(() => Effect.sync(() => void (tally.refused += ops.length))),
          Effect.ensuring(Effect.sync(() => void inFlight--)),
          Effect.forkDetach
        )
      }
      const nextSecond = Math.floor((performance.now() - start) / 1000)
      if (nextSecond > second) yield* emit(nextSecond)
      const wait = tickMillis - ((performance.now() - start) % tickMillis)
      yield* Effect.sleep(Duration.millis(wait))
    }
    // the submissions still under way belong to the run: wait for them (bounded), then report the last part
    for (let i = 0; i < 500 && inFlight > 0; i++) yield* Effect.sleep(Duration.millis(10))
    yield* emit((performance.now() - start) / 1000)
  })

const p99 = (samples: ReadonlyArray<number>) => {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!
}

/** One summary line. */
export const line = (s: Second): string => {
  const mean = s.batches === 0 ? 0 : s.persisted / s.batches
  const collapse = s.persisted === 0 ? 0 : (s.collapsed / s.persisted) * 100
  const latency = p99(s.durableMillis)
  return `t=${String(s.second).padStart(4)}s  in ${String(s.accepted).padStart(6)}/s` +
    `${s.refused > 0 ? ` (refused ${s.refused})` : ""}  persisted ${String(s.persisted).padStart(6)}/s` +
    `  batches ${String(s.batches).padStart(5)}/s  mean batch ${mean.toFixed(1).padStart(6)}` +
    `  collapse ${collapse.toFixed(0).padStart(3)}%  commits ${String(s.commits).padStart(4)}/s` +
    `  p99 op→durable ${Number.isNaN(latency) ? "   -" : latency.toFixed(0).padStart(4)} ms`
}

/** Drives the host with `scenario` until interrupted, logging one summary line per second. */
export const run = (scenario: Scenario) =>
  Effect.logInfo(`simulating the ${scenario} workload`).pipe(
    Effect.andThen(drive(workloads[scenario], { onSecond: (second) => Effect.logInfo(line(second)) }))
  )
