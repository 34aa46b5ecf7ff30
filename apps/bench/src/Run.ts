/**
 * One measured run: a workload offered for a number of seconds to a fresh `SectorHost` on the PostgreSQL sink, in
 * this process, on a database of its own (so `pg_stat_statements` and the transaction counters speak of this run
 * only). Everything a report needs comes out: offered / accepted / persisted per second, batch sizes and triggers
 * (exact, from a recording sink), measured and ideal collapse, commits (exact write transactions from the xid
 * horizon), the database's per-statement time shares, op→durable latency (sampled with durable acks), the
 * process's CPU and peak RSS.
 *
 * The `immediate` profile is run as the field report's old loop: a batch the moment an op is pending (what queued
 * up while one was being written goes in the next) and one transaction per batch (group commit off), with 8 writers
 * standing for per-sector persistence loops (`immediateSink`).
 */
import { Batch, BatchPolicy, type Op, SectorHost, SectorsConfig } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Client, SinkPg, Stats } from "@sectors/sink-pg"
import { Driver, Summary, type Workload } from "@sectors/workloads"
import { Duration, Effect, Layer, Logger, type Redacted } from "effect"
import * as Recorder from "./Recorder.ts"
import * as SectorRow from "./SectorRow.ts"

/** What to run. */
export interface Plan {
  readonly label: string
  readonly workload: Workload.Workload
  readonly profile: BatchPolicy.ProfileName
  readonly seconds: number
  /** One submission in this many acks durable and is timed. Defaults to 20. */
  readonly durableSample?: number | undefined
}

/** The sink of the `immediate` baseline: group commit off, 8 writers standing for per-sector loops. */
export const immediateSink = { maxGroupBatches: 1, writers: 8 } as const satisfies SinkPg.Options

/** What a run measured. */
export interface Result {
  readonly label: string
  readonly profile: BatchPolicy.ProfileName
  readonly seconds: number
  readonly perSecond: ReadonlyArray<Driver.Second>
  readonly offered: number
  readonly accepted: number
  readonly refused: number
  readonly persisted: number
  readonly batches: {
    readonly count: number
    readonly ops: Summary.Summary
    readonly rows: Summary.Summary
  }
  readonly triggers: Readonly<Record<BatchPolicy.Trigger, number>>
  /** 1 − rows / ops over all committed batches. */
  readonly collapse: number
  /** The collapse if every batch held exactly the ops of its `maxWait` window (capped at `maxBatch`). */
  readonly idealCollapse: number
  /** Write transactions (xid horizon) during the window. */
  readonly commits: number
  readonly commitMillis: Summary.Summary
  readonly latencyMillis: Summary.Summary
  /** The six statements with the most time (text shortened). */
  readonly statements: ReadonlyArray<{ readonly query: string; readonly calls: number; readonly share: number }>
  /** The standalone sector-row `UPDATE`'s share of statement time, over every statement (absent in older results). */
  readonly sectorRowShare?: number
  /** Process CPU over the window, in cores (1 = one core busy). */
  readonly cpuCores: number
  readonly rssPeakMiB: number
}

const shorten = (query: string) => query.replace(/\s+/g, " ").trim().slice(0, 90)

/** The collapse of the ideal batching for this policy: each sector's ops cut into maxWait windows. */
const idealCollapseOf = (
  log: ReadonlyArray<{ readonly sectorId: number; readonly ops: ReadonlyArray<Op.Op>; readonly at: number }>,
  policy: BatchPolicy.BatchPolicy
) => {
  const bySector = new Map<number, Array<{ op: Op.Op; at: number }>>()
  for (const entry of log) {
    const list = bySector.get(entry.sectorId) ?? []
    for (const op of entry.ops) list.push({ op, at: entry.at })
    bySector.set(entry.sectorId, list)
  }
  const maxWait = Duration.toMillis(policy.maxWait)
  let ops = 0
  let rows = 0
  for (const list of bySector.values()) {
    let start = 0
    while (start < list.length) {
      let end = start + 1
      while (end < list.length && end - start < policy.maxBatch && list[end]!.at - list[start]!.at <= maxWait) end++
      const window = list.slice(start, end).map((x) => x.op)
      ops += window.length
      rows += Batch.collapse(window).length
      start = end
    }
  }
  return ops === 0 ? 0 : 1 - rows / ops
}

/** Runs `plan` on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, plan: Plan) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench")
    const client = Client.layer(url, { maxConnections: 10, applicationName: "bench" })
    const sink = Recorder.layer(SinkPg.layerNoDeps(plan.profile === "immediate" ? immediateSink : {}))
    const config = SectorsConfig.layer({ profile: plan.profile, passivateAfter: Duration.infinity })
    const app = SectorHost.layer.pipe(Layer.provideMerge(sink), Layer.provideMerge(client), Layer.provide(config))

    return yield* Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const recorder = yield* Recorder.Recorder
      // activate every sector before measuring, so loads do not count
      yield* Effect.forEach(
        Array.from({ length: plan.workload.sectors }, (_, i) => i),
        (sectorId) => host.stats(sectorId),
        { concurrency: 16, discard: true }
      )
      const before = yield* Stats.snapshot
      recorder.reset()
      const log: Array<{ sectorId: number; ops: ReadonlyArray<Op.Op>; at: number }> = []
      const seconds: Array<Driver.Second> = []
      let rssPeak = process.memoryUsage.rss()
      const cpuBefore = process.cpuUsage()
      const wallBefore = performance.now()
      yield* Driver.drive(plan.workload, {
        duration: Duration.seconds(plan.seconds),
        durableSample: plan.durableSample,
        commits: SinkPg.transactions,
        onSubmit: (sectorId, ops, at) => void log.push({ sectorId, ops, at }),
        onSecond: (second) =>
          Effect.sync(() => {
            seconds.push(second)
            rssPeak = Math.max(rssPeak, process.memoryUsage.rss())
          })
      })
      const cpu = process.cpuUsage(cpuBefore)
      const wall = performance.now() - wallBefore
      const after = yield* Stats.snapshot
      const records = recorder.records()
      yield* host.shutdown

      const delta = Stats.diff(before, after)
      const triggers = Object.fromEntries(BatchPolicy.triggers.map((t) => [t, 0])) as Record<BatchPolicy.Trigger, number>
      for (const record of records) triggers[record.trigger]++
      const ops = records.reduce((sum, r) => sum + r.ops, 0)
      const rows = records.reduce((sum, r) => sum + r.rows, 0)
      const sum = (key: "offered" | "accepted" | "refused" | "persisted") => seconds.reduce((n, s) => n + s[key], 0)
      return {
        label: plan.label,
        profile: plan.profile,
        seconds: seconds.at(-1)?.second ?? plan.seconds,
        perSecond: seconds,
        offered: sum("offered"),
        accepted: sum("accepted"),
        refused: sum("refused"),
        persisted: sum("persisted"),
        batches: {
          count: records.length,
          ops: Summary.summarize(records.map((r) => r.ops)),
          rows: Summary.summarize(records.map((r) => r.rows))
        },
        triggers,
        collapse: ops === 0 ? 0 : 1 - rows / ops,
        idealCollapse: idealCollapseOf(log, BatchPolicy.profiles[plan.profile]),
        commits: delta.database.xids,
        commitMillis: Summary.summarize(records.map((r) => r.endedAt - r.startedAt)),
        latencyMillis: Summary.summarize(seconds.flatMap((s) => s.durableMillis)),
        statements: delta.statements.slice(0, 6).map((s) => ({ query: shorten(s.query), calls: s.calls, share: s.share })),
        sectorRowShare: Stats.share(delta, SectorRow.fenceStatement),
        cpuCores: (cpu.user + cpu.system) / 1000 / wall,
        rssPeakMiB: rssPeak / 2 ** 20
      } satisfies Result
    }).pipe(Effect.provide(app))
  }).pipe(Effect.scoped, Effect.provide(Logger.layer([])))
