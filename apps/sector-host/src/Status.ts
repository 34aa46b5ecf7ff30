/**
 * What the status page shows each second (`StatusPage`, through `StatusFeed`): one `Sample` of the host, built from
 * its own metrics (`@sectors/core`'s `Metrics`, the sink's commits, the cluster's handoffs) and state — never by
 * scraping `/metrics` text.
 *
 * Rates are deltas of the counters since the previous sample over the time between them; the op→durable percentiles
 * come from the deltas of `sectors_batch_durable_seconds`' buckets (their upper bounds): the time from each committed
 * batch's first op being accepted to the batch being durable — its slowest op's op→durable, so every op of the batch
 * took at most that long.
 *
 * A sampler is made when sampling starts (`sampler`): its first sample measures from then.
 *
 * **Gotchas** the busiest sectors are ranked over every resident sector (`SectorHost.list` reads each one's figures),
 * work in proportion to the resident sectors, done once a second and only while someone watches.
 */
import { BatchPolicy, Metrics, type Resilience, SectorHost, SectorsConfig } from "@sectors/core"
import { SinkPg } from "@sectors/sink-pg"
import { Clock, Duration, Effect, Metric } from "effect"
import * as Cluster from "./Cluster.ts"
import { Lifecycle } from "./Lifecycle.ts"
import { Sectors } from "./Sectors.ts"

/** How many of the busiest sectors a sample lists. */
export const busiestCount = 10

/** How many resident sector ids a sample lists in a cluster. */
export const residentListed = 500

/** One resident sector, among the busiest. */
export interface BusySector {
  readonly sector: number
  readonly phase: string
  readonly pending: number
  readonly mailbox: number
  /** `lastSeq − persistedSeq`: accepted ops not yet durable. */
  readonly lag: number
  readonly epoch: number | null
}

/** One second of the host, as the page charts it. */
export interface Sample {
  /** When it was taken (ms since the epoch). */
  readonly at: number
  /** Seconds measured (since the previous sample). */
  readonly seconds: number
  readonly opsAcceptedPerSecond: number
  readonly opsPersistedPerSecond: number
  readonly batchesPerSecond: number
  /** Ops per committed batch over the second (0 without batches). */
  readonly meanBatch: number
  /** Batches taken per second, by trigger. */
  readonly triggersPerSecond: Readonly<Record<BatchPolicy.Trigger, number>>
  /** Ops folded away by collapsing, in percent of the ops persisted (0 without). */
  readonly collapsePercent: number
  /** Transactions the PostgreSQL sink committed per second (a group commit holds several batches). */
  readonly commitsPerSecond: number
  /** Op→durable percentiles in milliseconds (see the module's note), `null` without batches. */
  readonly durableP50Millis: number | null
  readonly durableP99Millis: number | null
  readonly bufferedBytes: number
  readonly bufferBudgetBytes: number
  /** Submissions waiting in every mailbox. */
  readonly mailboxDepth: number
  readonly state: {
    readonly uptimeSeconds: number
    readonly phase: string
    /** `ready`, or why not (`starting`, `draining`, `buffer-full`). */
    readonly readiness: { readonly ready: boolean; readonly reason: string | null }
    readonly database: { readonly reachable: boolean; readonly downSince: number | null }
    readonly circuit: { readonly state: string; readonly until: number | null }
    readonly profile: string
    readonly policy: { readonly minBatch: number; readonly maxWaitMillis: number; readonly maxBatch: number }
    readonly residency: { readonly active: number; readonly maxActiveSectors: number }
  }
  readonly busiest: ReadonlyArray<BusySector>
  /** The cluster (`GET /cluster`'s data), `null` for a standalone host. */
  readonly cluster: {
    readonly runner: string
    readonly shardsPerGroup: number
    readonly runners: ReadonlyArray<Cluster.RunnerView>
    readonly handoffsPerSecond: number
    readonly handoffsTotal: number
    /** Sectors resident on this host (the first `residentListed`, by id). */
    readonly resident: ReadonlyArray<number>
  } | null
}

/** The counters a sample takes the deltas of. */
const counters = Effect.gen(function*() {
  const count = (metric: Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => Number(state.count))
  const triggers = {} as Record<BatchPolicy.Trigger, number>
  for (const trigger of BatchPolicy.triggers) triggers[trigger] = yield* count(Metrics.flushTriggersBy[trigger])
  return {
    at: yield* Clock.currentTimeMillis,
    received: yield* count(Metrics.opsReceived),
    persisted: yield* count(Metrics.opsPersisted),
    collapsed: yield* count(Metrics.opsCollapsed),
    batches: yield* count(Metrics.batches),
    commits: yield* count(SinkPg.transactions),
    handoffs: yield* count(Cluster.handoffs),
    triggers,
    durable: yield* Metric.value(Metrics.durableSeconds)
  }
})

/**
 * The `q` quantile (0–1) of the observations between two readings of a histogram: the upper bound of the bucket it
 * falls in (the largest finite bound for the overflow bucket), `null` without observations.
 */
export const quantileBetween = (
  before: Metric.HistogramState,
  after: Metric.HistogramState,
  q: number
): number | null => {
  const total = after.count - before.count
  if (total <= 0) return null
  const rank = q * total
  let largestFinite = 0
  for (let i = 0; i < after.buckets.length; i++) {
    const [bound, cumulative] = after.buckets[i]!
    if (Number.isFinite(bound)) largestFinite = bound
    if (cumulative - (before.buckets[i]?.[1] ?? 0) >= rank) return Number.isFinite(bound) ? bound : largestFinite
  }
  return largestFinite
}

const circuitOf = (status: Resilience.CircuitStatus) =>
  status._tag === "Open" ? { state: status._tag, until: status.until } : { state: status._tag, until: null }

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits

/** Makes a sampler whose first sample measures from now. Needs the host, the routing, the lifecycle, the config. */
export const sampler = Effect.gen(function*() {
  const host = yield* SectorHost.SectorHost
  const sectors = yield* Sectors
  const lifecycle = yield* Lifecycle
  const config = yield* SectorsConfig.SectorsConfig
  let last = yield* counters

  return Effect.gen(function*() {
    const now = yield* counters
    const seconds = Math.max(0.001, (now.at - last.at) / 1000)
    const rate = (key: "received" | "persisted" | "batches" | "commits" | "handoffs") =>
      round((now[key] - last[key]) / seconds)
    const triggersPerSecond = {} as Record<BatchPolicy.Trigger, number>
    for (const trigger of BatchPolicy.triggers) {
      triggersPerSecond[trigger] = round((now.triggers[trigger] - last.triggers[trigger]) / seconds)
    }
    const persisted = now.persisted - last.persisted
    const batches = now.batches - last.batches
    const collapsed = now.collapsed - last.collapsed
    const durable = (q: number) => {
      const seconds = quantileBetween(last.durable, now.durable, q)
      return seconds === null ? null : round(seconds * 1000)
    }

    const phase = yield* lifecycle.phase
    const buffer = host.buffer()
    const sink = host.sinkHealth()
    // the same reasons as `GET /readyz`
    const reason = phase !== "ready" ? phase : !host.accepting() ? "draining" : buffer.full ? "buffer-full" : null
    const mailboxDepth = yield* Metric.value(Metrics.mailboxDepth)

    const resident = yield* host.list
    const lagOf = (s: SectorHost.SectorSummary) => s.lastSeq - s.persistedSeq
    const ranked = [...resident]
      .sort((a, b) =>
        (b.pendingOps + b.mailboxDepth + lagOf(b)) - (a.pendingOps + a.mailboxDepth + lagOf(a)) ||
        a.sectorId - b.sectorId
      )
      .slice(0, busiestCount)
    const busiest = yield* Effect.forEach(ranked, (s) =>
      host.stats(s.sectorId).pipe(
        Effect.map((stats) => stats.epoch),
        Effect.orElseSucceed(() => null),
        Effect.map((epoch): BusySector => ({
          sector: s.sectorId,
          phase: s.phase,
          pending: s.pendingOps,
          mailbox: s.mailboxDepth,
          lag: lagOf(s),
          epoch
        }))
      ))

    const cluster = sectors.mode._tag === "Standalone" ? null : yield* sectors.mode.view.pipe(
      Effect.map((view) => ({
        runner: view.runner,
        shardsPerGroup: view.shardsPerGroup,
        runners: view.runners,
        handoffsPerSecond: rate("handoffs"),
        handoffsTotal: now.handoffs,
        resident: resident.map((s) => s.sectorId).sort((a, b) => a - b).slice(0, residentListed)
      })),
      Effect.orElseSucceed(() => null)
    )

    const sample: Sample = {
      at: now.at,
      seconds: round(seconds, 3),
      opsAcceptedPerSecond: rate("received"),
      opsPersistedPerSecond: rate("persisted"),
      batchesPerSecond: rate("batches"),
      meanBatch: batches > 0 ? round(persisted / batches) : 0,
      triggersPerSecond,
      collapsePercent: persisted > 0 ? round((100 * collapsed) / persisted) : 0,
      commitsPerSecond: rate("commits"),
      durableP50Millis: durable(0.5),
      durableP99Millis: durable(0.99),
      bufferedBytes: buffer.bufferedBytes,
      bufferBudgetBytes: buffer.budgetBytes,
      mailboxDepth: mailboxDepth.value,
      state: {
        uptimeSeconds: Math.round(process.uptime()),
        phase,
        readiness: { ready: reason === null, reason },
        database: { reachable: sink.up, downSince: sink.downSince ?? null },
        circuit: circuitOf(host.circuit()),
        profile: config.profile,
        policy: {
          minBatch: config.policy.minBatch,
          maxWaitMillis: Duration.toMillis(config.policy.maxWait),
          maxBatch: config.policy.maxBatch
        },
        residency: host.residency()
      },
      busiest,
      cluster
    }
    last = now
    return sample
  })
})
