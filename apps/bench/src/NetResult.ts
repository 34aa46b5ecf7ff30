/**
 * The field report's "Net Result" at its own conditions: 1 000 ops/s into one sector whose hot components are
 * updated many times within `maxWait` ("component X on entity Y updates 10 times in 50 ms"), measured for the
 * report's old loop re-created here (`OldLoop`) and for ours (`SectorHost` on the PostgreSQL sink, `balanced`, and
 * once more `aggressive`: the report's "After (Balanced Config)" rows ask for 50–100 ops a batch at 20–40 batches/s,
 * which at 1 000 ops/s only a `maxWait` of 50 ms gives), one after the other in the same process, each on a fresh database of the same server. For each: batches/s,
 * ops per batch, the timestamp / sector-row write's share of database time, ops collapsed, rows written per second,
 * commits per second (the xid horizon: exact write transactions), process CPU with the sector idle afterwards, and
 * the highest rate it sustains in that shape.
 *
 * The shape (`hotUpdates`): every op a `set`; with probability `shape.hotShare` one of `shape.hotKeys` hot
 * components (entity 0…3, `position`), otherwise a cold one (entity uniform over 500, `position` or `velocity`). At
 * 1 000 ops/s each hot component is updated 200 times a second, 10 times in 50 ms. The producer is the same for
 * both: every ~1 ms it offers what the rate asks for since its last tick (at 1 000 ops/s, one op), as the report's
 * producers send continuously; draws come from a seeded generator, so both sides get the same ops in the same order.
 *
 * The sector-row share is the sector-row write's time over the database's time. The database's time is its
 * `active_time` over the run (`DatabaseTime`): statements and commits, on a database the run has to itself. Statement
 * times alone (`pg_stat_statements`) leave every commit's WAL flush out — after an explicit `COMMIT` as after a
 * single statement — which on this machine is most of a small transaction's time; both figures are reported. The old
 * loop's timestamp upsert is its own statement, so `pg_stat_statements` gives its time directly. Ours fences and
 * writes the watermark inside the group statement (the claim fence and, for the sectors it does not vouch for, the
 * sector-row `UPDATE`, as CTEs), which `pg_stat_statements` cannot split; its time is that statement's time times
 * the fence's part of the statement in the steady state, read from `EXPLAIN ANALYZE` on one-sector statements at the
 * measured rows per batch (`SectorRow`; this shape's groups hold one sector, so the fence's fixed cost is not
 * shared), plus any standalone fence statement (groups with deletes; none in this shape). The database's time
 * includes, on both sides alike, the few statements before the measured window (the first op, the sector's claim)
 * and the two statistics snapshots.
 */
import { PgClient } from "@effect/sql-pg"
import { Metrics, type Op, SectorHost, SectorsConfig } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Client, Migrations, SinkPg, Stats } from "@sectors/sink-pg"
import { Summary } from "@sectors/workloads"
import { Duration, Effect, Exit, FiberSet, Layer, Logger, Metric, Redacted } from "effect"
import { absurd } from "effect/Function"
import postgres from "postgres"
import { highestSustained } from "./Capacity.ts"
import * as DatabaseTime from "./DatabaseTime.ts"
import * as OldLoop from "./OldLoop.ts"
import * as Recorder from "./Recorder.ts"
import * as SectorRow from "./SectorRow.ts"

/** The load's shape. */
export const shape = {
  /** Ops per second of the measured run. */
  rate: 1_000,
  sectorId: 0,
  entities: 500,
  hotKeys: 4,
  hotShare: 0.8,
  seed: 17
} as const

/** The report's table as printed ("After (Balanced Config)" and "Before"), and which way is better. */
export const report = [
  { row: "batches", metric: "Batches/sec", before: "200", after: "20-40", better: "lower", bound: 40 },
  { row: "batchSize", metric: "Avg batch size", before: "5", after: "50-100", better: "higher", bound: 50 },
  { row: "sectorRowShare", metric: "Timestamp % of DB", before: "8%", after: "2-4%", better: "lower", bound: 0.04 },
  { row: "collapse", metric: "Ops collapsed", before: "20-30%", after: "60-80%", better: "higher", bound: 0.6 },
  { row: "writes", metric: "DB writes", before: "800 ops", after: "300-400 ops", better: "lower", bound: 400 },
  { row: "commits", metric: "Transaction commits/sec", before: "200", after: "20-40", better: "lower", bound: 40 },
  { row: "idleCpu", metric: "CPU usage (idle)", before: "30-40%", after: "5-10%", better: "lower", bound: 0.1 },
  { row: "capacity", metric: "Throughput capacity", before: "Baseline", after: "+20-40%", better: "higher", bound: 1.2 }
] as const

/** What one implementation did at the report's rate. */
export interface Figures {
  readonly seconds: number
  readonly offered: number
  readonly accepted: number
  readonly persisted: number
  readonly batches: number
  readonly batchOps: Summary.Summary
  /**
   * Ops per batch without the first and the last batch, which the load's start and end cut short (ours; absent in
   * earlier results).
   */
  readonly steadyBatchOps?: number | undefined
  /**
   * Batches per second between the first batch and the last, `(n − 1) / (last start − first start)`: the rate of the
   * steady state, which the load's start and end (a partial window at each) do not tilt (ours; absent earlier).
   */
  readonly steadyBatchesPerSecond?: number | undefined
  /** Entity rows written (after collapsing). */
  readonly rows: number
  /** 1 − rows / ops over the batches. */
  readonly collapse: number
  /** Write transactions (xid horizon). */
  readonly commits: number
  /**
   * Fraction of the database's time (`databaseMillis`) spent on the timestamp / sector-row write: the row "Timestamp %
   * of DB".
   */
  readonly sectorRowShare: number
  /** The same time as a fraction of statement time alone (`pg_stat_statements`: commits not counted). */
  readonly sectorRowShareOfStatements: number
  /** The database's `active_time` over the run, commits included (`DatabaseTime`), ms. */
  readonly databaseMillis: number
  /** Statement time over the run (`pg_stat_statements`), ms. */
  readonly statementMillis: number
  readonly statements: ReadonlyArray<{ readonly query: string; readonly calls: number; readonly share: number }>
  readonly latencyMillis: Summary.Summary
  /** Process CPU during the load, in cores. */
  readonly cpuCores: number
  /** Process CPU with the one sector idle after the load, as a fraction of one core. */
  readonly idleCpuOfOneCore: number
  readonly idleSeconds: number
}

/** One step of a capacity search. */
export interface Step {
  readonly rate: number
  readonly sustained: boolean
  readonly offeredPerSecond: number
  readonly acceptedPerSecond: number
  readonly persistedPerSecond: number
  readonly p99: number
}

/** The highest rate sustained in the shape. */
export interface Capacity {
  readonly maxSustained: number
  readonly steps: ReadonlyArray<Step>
}

/** Both sides. */
export interface Result {
  readonly shape: typeof shape
  readonly loadAverage: ReadonlyArray<number>
  readonly capacitySeconds: number
  readonly old: { readonly figures: Figures; readonly capacity: Capacity }
  readonly ours: Side
  /** Ours once more under the `aggressive` profile (`maxWait` 50 ms); absent in results of earlier runs. */
  readonly aggressive?: Side | undefined
}

/** One of our runs: its figures at the report's rate, its capacity, and the fence's part of its group statement. */
export interface Side {
  readonly figures: Figures
  readonly capacity: Capacity
  readonly sectorRowFraction: number
}

/** The profiles ours is measured with. */
export type Profile = "balanced" | "aggressive"

/** How long to measure. */
export interface Options {
  readonly seconds: number
  readonly idleSeconds: number
  readonly capacitySeconds: number
  readonly rates: ReadonlyArray<number>
  readonly refine: number
}

export const quick: Options = {
  seconds: 10,
  idleSeconds: 5,
  capacitySeconds: 3,
  rates: [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000, 1_024_000],
  refine: 2
}
export const full: Options = { ...quick, seconds: 30, idleSeconds: 10, capacitySeconds: 8 }

/** mulberry32: a small seeded generator, the same draws on every run. */
const seeded = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** The shape's ops, one per call, from `seed`. */
export const hotUpdates = (seed: number = shape.seed): () => OldLoop.Update => {
  const next = seeded(seed)
  return () =>
    next() < shape.hotShare
      ? { entity: Math.floor(next() * shape.hotKeys), component: "position", data: { x: Math.round(next() * 1000), y: 0 } }
      : {
        entity: Math.floor(next() * shape.entities),
        component: next() < 0.5 ? "position" : "velocity",
        data: { x: Math.round(next() * 1000), y: Math.round(next() * 1000) }
      }
}

/**
 * Offers `rate` ops/s for `seconds`: every ~1 ms what the rate asks for since the last tick, drawn from the shape.
 * Returns the ops offered.
 */
const produce = <R>(rate: number, seconds: number, offer: (updates: Array<OldLoop.Update>) => Effect.Effect<void, never, R>) =>
  Effect.gen(function*() {
    const draw = hotUpdates()
    const start = performance.now()
    let previous = start
    let carry = 0
    let offered = 0
    while (performance.now() - start < seconds * 1000) {
      const now = performance.now()
      carry += rate * (now - previous) / 1000
      previous = now
      const n = Math.floor(carry)
      carry -= n
      if (n > 0) {
        offered += n
        yield* offer(Array.from({ length: n }, draw))
      }
      yield* Effect.sleep(Duration.millis(1))
    }
    return offered
  })

/** Process CPU over `seconds` of doing nothing, as a fraction of one core (one plain timeout, not the runtime's clock). */
const idleCpu = (seconds: number) =>
  Effect.promise(async () => {
    await new Promise((resolve) => setTimeout(resolve, 1_000)) // let the last batch settle
    const before = process.cpuUsage()
    const wall = performance.now()
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
    const cpu = process.cpuUsage(before)
    return (cpu.user + cpu.system) / 1000 / (performance.now() - wall)
  })

const shorten = (query: string) => query.replace(/\s+/g, " ").trim().slice(0, 90)

const statementsOf = (delta: Stats.Delta) =>
  delta.statements.slice(0, 6).map((s) => ({ query: shorten(s.query), calls: s.calls, share: s.share }))

/** What the old loop measured in one window. */
interface OldWindow {
  readonly offered: number
  readonly counters: OldLoop.Counters
  readonly delta: Stats.Delta
  /** The database's `active_time` over the run (`DatabaseTime`): statements and commits. */
  readonly databaseMillis: number
  readonly cpuCores: number
  readonly seconds: number
  readonly idle?: number
}

/**
 * A fresh database of the server with the sink's tables (and the old loop's timestamp table), set up by a client
 * that is gone again, so that the database's `active_time` (`DatabaseTime`) can be read before the measured clients
 * connect: yields its URL and that reading.
 */
const freshTables = (serverUrl: Redacted.Redacted<string>, prefix: string) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, prefix)
    yield* Effect.gen(function*() {
      yield* Migrations.run
      const sql = postgres(Redacted.value(url), { max: 1, onnotice: () => {} })
      yield* Effect.promise(() => OldLoop.createTimestampTable(sql).finally(() => sql.end()))
    }).pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1, applicationName: "bench-net-setup" })), Effect.scoped)
    const database = DatabaseTime.databaseOf(url)
    return { url, database, activeBefore: yield* DatabaseTime.activeMillis(serverUrl, database) }
  })

/** The old loop on a fresh database: `rate` for `seconds`, a second's grace to drain, then (optionally) idle. */
const oldWindow = (serverUrl: Redacted.Redacted<string>, rate: number, seconds: number, idleSeconds?: number) =>
  Effect.gen(function*() {
    const { activeBefore, database, url } = yield* freshTables(serverUrl, "bench_net_old")
    const window = yield* Effect.gen(function*() {
      const sql = postgres(Redacted.value(url), { max: 1, onnotice: () => {} })
      yield* Effect.addFinalizer(() => Effect.promise(() => sql.end()))
      const loop = OldLoop.start(sql, shape.sectorId)
      yield* Effect.addFinalizer(() => Effect.promise(() => loop.stop()))
      // warm up the prepared statements, unmeasured
      loop.offer([{ entity: 0, component: "position", data: { x: 0, y: 0 } }])
      yield* Effect.sleep(Duration.millis(200))
      const before = yield* Stats.snapshot
      loop.reset()
      const cpuBefore = process.cpuUsage()
      const start = performance.now()
      const offered = yield* produce(rate, seconds, (updates) => Effect.sync(() => loop.offer(updates)))
      const elapsed = (performance.now() - start) / 1000
      // a second's grace for what is queued
      const drainUntil = performance.now() + 1_000
      while (loop.counters().queued > 0 && performance.now() < drainUntil) yield* Effect.sleep(Duration.millis(5))
      yield* Effect.sleep(Duration.millis(20))
      const cpu = process.cpuUsage(cpuBefore)
      const counters = loop.counters()
      const after = yield* Stats.snapshot
      const idle = idleSeconds === undefined ? undefined : yield* idleCpu(idleSeconds)
      return {
        offered,
        counters,
        delta: Stats.diff(before, after),
        cpuCores: (cpu.user + cpu.system) / 1000 / (performance.now() - start),
        seconds: elapsed,
        ...(idle === undefined ? {} : { idle })
      }
    }).pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1, applicationName: "bench-net-stats" })), Effect.scoped)
    // the loop and both clients are closed: their backends report what they did when they exit
    const databaseMillis = (yield* DatabaseTime.activeMillis(serverUrl, database)) - activeBefore
    return { ...window, databaseMillis } satisfies OldWindow
  }).pipe(Effect.scoped)

/** What ours measured in one window. */
interface OursWindow {
  readonly offered: number
  readonly accepted: number
  readonly refused: number
  readonly persisted: number
  readonly records: ReadonlyArray<Recorder.Record>
  readonly latencyMillis: ReadonlyArray<number>
  readonly delta: Stats.Delta
  /** The database's `active_time` over the run (`DatabaseTime`): statements and commits. */
  readonly databaseMillis: number
  readonly cpuCores: number
  readonly seconds: number
  readonly idle?: number
}

/** Ours (`profile`) on a fresh database: `rate` for `seconds`, a second's grace, then (optionally) idle. */
const oursWindow = (
  serverUrl: Redacted.Redacted<string>,
  profile: Profile,
  rate: number,
  seconds: number,
  idleSeconds?: number
) =>
  Effect.gen(function*() {
    const { activeBefore, database, url } = yield* freshTables(serverUrl, "bench_net_ours")
    const app = SectorHost.layer.pipe(
      Layer.provideMerge(Recorder.layer(SinkPg.layerNoDeps({}))),
      Layer.provideMerge(Client.layer(url, { maxConnections: 10, applicationName: "bench-net" })),
      Layer.provide(SectorsConfig.layer({ profile, passivateAfter: Duration.infinity }))
    )
    const window = yield* Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const recorder = yield* Recorder.Recorder
      // activate the sector and warm the statements up, unmeasured
      yield* host.submit(shape.sectorId, [{ type: "set", entity: 0, component: "position", data: { x: 0, y: 0 } }], { ack: "durable" })
      const before = yield* Stats.snapshot
      recorder.reset()
      const persistedBefore = (yield* Metric.value(Metrics.opsPersisted)).count
      const inFlight = yield* FiberSet.make<void, never>()
      let accepted = 0
      let refused = 0
      let submissions = 0
      const latencyMillis: Array<number> = []
      const cpuBefore = process.cpuUsage()
      const start = performance.now()
      const offered = yield* produce(rate, seconds, (updates) => {
        const ops: ReadonlyArray<Op.Op> = updates.map((u) => ({ type: "set", ...u }))
        const durable = ++submissions % 20 === 0
        const at = performance.now()
        return Effect.asVoid(FiberSet.run(
          inFlight,
          host.submit(shape.sectorId, ops, durable ? { ack: "durable" } : undefined).pipe(
            Effect.exit,
            Effect.map((exit) => {
              if (Exit.isSuccess(exit)) {
                accepted += ops.length
                if (durable) latencyMillis.push(performance.now() - at)
              } else refused += ops.length
            })
          )
        ))
      })
      const elapsed = (performance.now() - start) / 1000
      // a second's grace for submissions under way and the last batch
      yield* Effect.timeoutOption(FiberSet.awaitEmpty(inFlight), Duration.seconds(1))
      const drainUntil = performance.now() + 1_000
      const persisted = () => Effect.map(Metric.value(Metrics.opsPersisted), (s) => s.count - persistedBefore)
      while ((yield* persisted()) < accepted && performance.now() < drainUntil) yield* Effect.sleep(Duration.millis(5))
      const cpu = process.cpuUsage(cpuBefore)
      const persistedOps = yield* persisted()
      const records = recorder.records()
      const after = yield* Stats.snapshot
      const idle = idleSeconds === undefined ? undefined : yield* idleCpu(idleSeconds)
      yield* host.shutdown
      return {
        offered,
        accepted,
        refused,
        persisted: persistedOps,
        records,
        latencyMillis,
        delta: Stats.diff(before, after),
        cpuCores: (cpu.user + cpu.system) / 1000 / (performance.now() - start),
        seconds: elapsed,
        ...(idle === undefined ? {} : { idle })
      }
    }).pipe(Effect.provide(app))
    // the host and its pool are closed: their backends report what they did when they exit
    const databaseMillis = (yield* DatabaseTime.activeMillis(serverUrl, database)) - activeBefore
    return { ...window, databaseMillis } satisfies OursWindow
  }).pipe(Effect.scoped)

/** Whether a step kept up: the producer offered ≥ 95 % of the rate, ≥ 95 % was accepted and persisted, p99 < 2 s. */
const sustained = (rate: number, seconds: number, offered: number, accepted: number, persisted: number, p99: number) =>
  offered >= 0.95 * rate * seconds && accepted >= 0.95 * offered && persisted >= 0.95 * accepted &&
  (Number.isNaN(p99) || p99 < 2_000)

/** Doubles the rate until a step is not sustained, then `refine` geometric bisection steps (as `Capacity`). */
const search = <E, R>(options: Options, step: (rate: number) => Effect.Effect<Step, E, R>) =>
  Effect.gen(function*() {
    const steps: Array<Step> = []
    const run = (rate: number) =>
      Effect.map(step(rate), (s) => {
        steps.push(s)
        return s.sustained
      })
    const maxSustained = yield* highestSustained(options, run)
    return { maxSustained, steps } satisfies Capacity
  })

const oldStep = (serverUrl: Redacted.Redacted<string>, seconds: number) => (rate: number) =>
  Effect.map(oldWindow(serverUrl, rate, seconds), (w): Step => {
    const p99 = Summary.percentile(w.counters.latencyMillis, 99)
    return {
      rate,
      sustained: sustained(rate, seconds, w.offered, w.offered, w.counters.ops, p99),
      offeredPerSecond: w.offered / w.seconds,
      acceptedPerSecond: w.offered / w.seconds,
      persistedPerSecond: w.counters.ops / w.seconds,
      p99
    }
  })

const oursStep = (serverUrl: Redacted.Redacted<string>, profile: Profile, seconds: number) => (rate: number) =>
  Effect.map(oursWindow(serverUrl, profile, rate, seconds), (w): Step => {
    const p99 = Summary.percentile(w.latencyMillis, 99)
    return {
      rate,
      sustained: sustained(rate, seconds, w.offered, w.accepted, w.persisted, p99),
      offeredPerSecond: w.offered / w.seconds,
      acceptedPerSecond: w.accepted / w.seconds,
      persistedPerSecond: w.persisted / w.seconds,
      p99
    }
  })

/** Statement time (`pg_stat_statements`) of the statements whose text matches `pattern`, ms. */
const millisOf = (delta: Stats.Delta, pattern: RegExp): number =>
  delta.statements.filter((s) => pattern.test(s.query)).reduce((sum, s) => sum + s.totalMs, 0)

/** The sector-row figures of a run whose sector-row write took `millis` of the database's `databaseMillis`. */
const sectorRow = (delta: Stats.Delta, databaseMillis: number, millis: number) => {
  const statementMillis = delta.statements.reduce((sum, s) => sum + s.totalMs, 0)
  return {
    sectorRowShare: millis / databaseMillis,
    sectorRowShareOfStatements: statementMillis > 0 ? millis / statementMillis : 0,
    databaseMillis,
    statementMillis
  }
}

/** Ours (`profile`) at the report's rate, then the fence's part of its group statement: its figures. */
const oursFigures = (
  serverUrl: Redacted.Redacted<string>,
  profile: Profile,
  options: Options,
  points: Effect.Effect<ReadonlyArray<SectorRow.Point>, unknown>,
  log: (message: string) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    yield* log(`netresult: ours (${profile}) at ${shape.rate} ops/s for ${options.seconds} s, then ${options.idleSeconds} s idle`)
    const w = yield* oursWindow(serverUrl, profile, shape.rate, options.seconds, options.idleSeconds)
    const ops = w.records.reduce((n, r) => n + r.ops, 0)
    const rows = w.records.reduce((n, r) => n + r.rows, 0)
    // this run's groups hold one sector each: the fence's fixed cost is not shared, so the one-sector point applies
    const sectorRowFraction = SectorRow.shareAt(yield* points, w.records.length === 0 ? 1 : rows / w.records.length, 1)
    const figures: Figures = {
      seconds: w.seconds,
      offered: w.offered,
      accepted: w.accepted,
      persisted: w.persisted,
      batches: w.records.length,
      batchOps: Summary.summarize(w.records.map((r) => r.ops)),
      steadyBatchesPerSecond: w.records.length <= 2
        ? Number.NaN
        : (w.records.length - 1) * 1000 / (w.records[w.records.length - 1]!.startedAt - w.records[0]!.startedAt),
      steadyBatchOps: w.records.length <= 2
        ? Number.NaN
        : w.records.slice(1, -1).reduce((n, r) => n + r.ops, 0) / (w.records.length - 2),
      rows,
      collapse: ops === 0 ? 0 : 1 - rows / ops,
      commits: w.delta.database.xids,
      ...sectorRow(
        w.delta,
        w.databaseMillis,
        millisOf(w.delta, SectorRow.fenceStatement) + millisOf(w.delta, SectorRow.groupStatement) * sectorRowFraction
      ),
      statements: statementsOf(w.delta),
      latencyMillis: Summary.summarize(w.latencyMillis),
      cpuCores: w.cpuCores,
      idleCpuOfOneCore: w.idle ?? Number.NaN,
      idleSeconds: options.idleSeconds
    }
    return { figures, sectorRowFraction }
  })

/** Runs the old loop and ours (both profiles) at the report's rate, then every capacity search, on fresh databases. */
export const run = (
  serverUrl: Redacted.Redacted<string>,
  options: Options,
  log: (message: string) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const loadAverage = (yield* Effect.promise(() => import("node:os"))).loadavg()
    yield* log(`netresult: old loop at ${shape.rate} ops/s for ${options.seconds} s, then ${options.idleSeconds} s idle`)
    const o = yield* oldWindow(serverUrl, shape.rate, options.seconds, options.idleSeconds)
    const oldFigures: Figures = {
      seconds: o.seconds,
      offered: o.offered,
      accepted: o.offered,
      persisted: o.counters.ops,
      batches: o.counters.batches,
      batchOps: Summary.summarize(o.counters.batchOps),
      rows: o.counters.ops,
      collapse: 0,
      commits: o.delta.database.xids,
      ...sectorRow(o.delta, o.databaseMillis, millisOf(o.delta, /persisted_timestamps/)),
      statements: statementsOf(o.delta),
      latencyMillis: Summary.summarize(o.counters.latencyMillis),
      cpuCores: o.cpuCores,
      idleCpuOfOneCore: o.idle ?? Number.NaN,
      idleSeconds: options.idleSeconds
    }

    // the fence's part of a one-sector group statement, by EXPLAIN ANALYZE: measured once, for both profiles
    const points = yield* Effect.cached(
      Effect.andThen(log("netresult: the sector-row write's part of the group statement (EXPLAIN ANALYZE)"), SectorRow.run(serverUrl, 20))
    )
    const balanced = yield* oursFigures(serverUrl, "balanced", options, points, log)
    const aggressive = yield* oursFigures(serverUrl, "aggressive", options, points, log)
    yield* log("netresult: capacity of the old loop")
    const oldCapacity = yield* search(options, (rate) =>
      Effect.tap(oldStep(serverUrl, options.capacitySeconds)(rate), (s) => log(describe("old loop", s))))
    const capacityOf = (profile: Profile) =>
      Effect.andThen(
        log(`netresult: capacity of ours (${profile})`),
        search(options, (rate) =>
          Effect.tap(oursStep(serverUrl, profile, options.capacitySeconds)(rate), (s) => log(describe(profile, s))))
      )
    const oursCapacity = yield* capacityOf("balanced")
    const aggressiveCapacity = yield* capacityOf("aggressive")
    return {
      shape,
      loadAverage,
      capacitySeconds: options.capacitySeconds,
      old: { figures: oldFigures, capacity: oldCapacity },
      ours: { ...balanced, capacity: oursCapacity },
      aggressive: { ...aggressive, capacity: aggressiveCapacity }
    } satisfies Result
  }).pipe(Effect.provide(Logger.layer([])))

const describe = (who: string, s: Step) =>
  `netresult: ${who} at ${s.rate} ops/s: ${s.sustained ? "sustained" : "not sustained"} (offered ${Math.round(s.offeredPerSecond)}/s, ` +
  `accepted ${Math.round(s.acceptedPerSecond)}/s, persisted ${Math.round(s.persistedPerSecond)}/s, p99 ${Math.round(s.p99)} ms)`

/** One row of the comparison: the old loop's figure, the report's "after", ours, and whether ours is as good. */
export interface Row {
  readonly metric: string
  readonly old: number
  readonly before: string
  readonly after: string
  readonly ours: number
  /**
   * Ours in the steady state, where the load's start and end tilt the figure over a window of seconds: batches/s and
   * ops per batch without the partial windows at either end, and commits/s as batches/s when every batch was its own
   * transaction (one sector: each group commit holds one batch).
   */
  readonly oursSteady?: number | undefined
  /** Ours (in the steady state where there is one) against the least good end of the report's "after" range. */
  readonly asGood: boolean
}

/** The table's rows from a result: ours is `side` (balanced unless told). */
export const rows = (result: Result, side: Side = result.ours): ReadonlyArray<Row> => {
  const per = (f: Figures, n: number) => n / f.seconds
  const value = (f: Figures, capacity: Capacity, row: (typeof report)[number]["row"], baseline: number): number => {
    switch (row) {
      case "batches":
        return per(f, f.batches)
      case "batchSize":
        return f.batchOps.mean
      case "sectorRowShare":
        return f.sectorRowShare
      case "collapse":
        return f.collapse
      case "writes":
        return per(f, f.rows)
      case "commits":
        return per(f, f.commits)
      case "idleCpu":
        return f.idleCpuOfOneCore
      case "capacity":
        return capacity.maxSustained / baseline
      default:
        return absurd(row)
    }
  }
  const base = result.old.capacity.maxSustained
  return report.map((r) => {
    const old = value(result.old.figures, result.old.capacity, r.row, base)
    const ours = value(side.figures, side.capacity, r.row, base)
    const f = side.figures
    const steady = r.row === "batches"
      ? f.steadyBatchesPerSecond
      : r.row === "batchSize"
      ? f.steadyBatchOps
      : r.row === "commits" && f.commits === f.batches
      ? f.steadyBatchesPerSecond
      : undefined
    const judged = steady === undefined || Number.isNaN(steady) ? ours : steady
    return {
      metric: r.metric,
      old,
      before: r.before,
      after: r.after,
      ours,
      ...(judged === ours ? {} : { oursSteady: judged }),
      asGood: r.better === "lower" ? judged <= r.bound : judged >= r.bound
    }
  })
}
