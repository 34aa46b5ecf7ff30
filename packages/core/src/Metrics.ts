/**
 * The runtime's metrics (effect `Metric`), exported by the host to Prometheus and OTLP. They follow the field
 * report's list: batch size and accumulation time, flush triggers by reason, ops received / persisted / collapsed,
 * batches, persist latency, retries, circuit state, mailbox depth and pending keys, shutdown figures, dead letters,
 * ops lost.
 *
 * No metric carries a sector id: with 10 000 sectors that would explode cardinality. Per-sector figures are in
 * `Sector.stats`. Gauges such as mailbox depth are sums over all active sectors.
 *
 * A labelled counter has one series per known label value (`flushTriggersBy`, `persistFailuresBy`, `refusedBy`,
 * `shutdownsBy`, `opsLostBy`), and `register` puts every series of this module in the registry at its zero when a
 * host starts: effect registers a series on its first update, and `rate()` or an alert on a series that appears only
 * with its first increment has nothing to work on until then.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as BatchPolicy from "./BatchPolicy.ts"

const sizes = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
const seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Bytes of accepted, not yet durable data held by all sectors (`Batch.cellBytes` estimates). */
export const bufferedBytes = Metric.gauge("sectors_buffered_bytes", {
  description: "Bytes of accepted but not yet durable data held in memory, over all sectors (estimate)"
})

/** The host's buffer budget (`maxBufferedBytes`). */
export const bufferBudgetBytes = Metric.gauge("sectors_buffer_budget_bytes", {
  description: "Most bytes of accepted but not yet durable data the host holds (MAX_BUFFERED_BYTES)"
})

/** 1 while the sink's last persist succeeded (or none failed yet), 0 while persists fail. */
export const sinkUp = Metric.gauge("sectors_sink_up", {
  description: "1 while the database answers persists, 0 while they fail"
})

/** Sectors passivated to make room for another (the residency cap was reached). */
export const evictions = Metric.counter("sectors_evictions_total", {
  description: "Sectors passivated to make room under the residency cap (MAX_ACTIVE_SECTORS)",
  incremental: true
})

/** Sectors passivated after being idle for `passivateAfter`. */
export const passivations = Metric.counter("sectors_passivations_total", {
  description: "Sectors passivated after being unused for passivateAfter",
  incremental: true
})

/** Ops accepted into a sector (seq assigned). */
export const opsReceived = Metric.counter("sectors_ops_received_total", {
  description: "Ops accepted by sectors",
  incremental: true
})

/** Ops made durable (their batch committed). */
export const opsPersisted = Metric.counter("sectors_ops_persisted_total", {
  description: "Ops whose batch committed",
  incremental: true
})

/** Ops that needed no write of their own because a later op on the same key superseded them in the batch. */
export const opsCollapsed = Metric.counter("sectors_ops_collapsed_total", {
  description: "Ops folded away by collapsing (ops minus rows written, per committed batch)",
  incremental: true
})

/** Batches committed. */
export const batches = Metric.counter("sectors_batches_total", {
  description: "Batches committed",
  incremental: true
})

/** Ops per committed batch. */
export const batchOps = Metric.histogram("sectors_batch_ops", {
  description: "Ops folded into each committed batch",
  boundaries: sizes
})

/** Rows (entries) per committed batch. */
export const batchRows = Metric.histogram("sectors_batch_rows", {
  description: "Rows written or deleted by each committed batch",
  boundaries: sizes
})

/** Time from the first op of a batch to the start of its persist. */
export const accumulationSeconds = Metric.histogram("sectors_batch_accumulation_seconds", {
  description: "Time from a batch's first op to the start of its persist",
  boundaries: seconds
})

/**
 * Time from a batch's first (oldest) op being accepted to the batch being durable: the op→durable of the slowest op
 * of each committed batch, so its percentiles bound every op's from above.
 */
export const durableSeconds = Metric.histogram("sectors_batch_durable_seconds", {
  description: "Time from a batch's first op being accepted to the batch being durable (its slowest op's op→durable)",
  boundaries: seconds
})

/** Time to persist a batch, retries included. */
export const persistSeconds = Metric.histogram("sectors_persist_duration_seconds", {
  description: "Time to persist a batch, retries included",
  boundaries: seconds
})

/** Why batches were taken; label `reason`. */
export const flushTriggers = Metric.counter("sectors_flush_triggers_total", {
  description: "Batches taken, by trigger (min_batch, max_wait, max_batch, shutdown, manual)",
  incremental: true
})

/** `flushTriggers`, one series per trigger. */
export const flushTriggersBy: Readonly<Record<BatchPolicy.Trigger, Metric.Counter<number>>> = byLabel(
  flushTriggers,
  BatchPolicy.triggers
)

/** Retries of failed persists. */
export const retries = Metric.counter("sectors_persist_retries_total", {
  description: "Retries of failed persists",
  incremental: true
})

/** Persist attempts that failed after their retries; label `reason` (Transient, Rejected, Fenced, Fatal, Unavailable). */
export const persistFailures = Metric.counter("sectors_persist_failures_total", {
  description: "Persists that failed after retries, by reason",
  incremental: true
})

/** Why a persist failed after its retries: the `reason` label of `persistFailures`. */
export type PersistFailureReason = "Transient" | "Rejected" | "Fenced" | "Fatal" | "Unavailable"

/** `persistFailures`, one series per reason. `Fenced` counts batches refused because another owner claimed the sector. */
export const persistFailuresBy: Readonly<Record<PersistFailureReason, Metric.Counter<number>>> = byLabel(
  persistFailures,
  ["Transient", "Rejected", "Fenced", "Fatal", "Unavailable"]
)

/** Circuit state: 0 closed, 1 half-open, 2 open. */
export const circuitState = Metric.gauge("sectors_circuit_state", {
  description: "Circuit breaker around the sink: 0 closed, 1 half-open, 2 open"
})

/** Submissions waiting in mailboxes, summed over sectors. */
export const mailboxDepth = Metric.gauge("sectors_mailbox_depth", {
  description: "Submissions waiting in sector mailboxes (sum over sectors)"
})

/** Distinct keys pending, summed over sectors. */
export const pendingKeys = Metric.gauge("sectors_pending_keys", {
  description: "Distinct (entity, component) keys pending (sum over sectors)"
})

/** Pending keys of a sector over its `maxPendingKeys`, observed at every flush. */
export const pendingKeysUtilisation = Metric.histogram("sectors_pending_keys_utilisation", {
  description: "A sector's pending keys divided by maxPendingKeys, observed when it takes a batch",
  boundaries: [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1]
})

/** Submissions refused; label `reason` (MailboxFull, BacklogFull, BufferFull, ShuttingDown, ResidencyFull). */
export const refused = Metric.counter("sectors_submissions_refused_total", {
  description: "Submissions refused, by reason",
  incremental: true
})

/** Why a submission was refused: the `reason` label of `refused` (the refusal's error tag). */
export type RefusalReason = "MailboxFull" | "BacklogFull" | "BufferFull" | "ShuttingDown" | "ResidencyFull"

/** `refused`, one series per reason. */
export const refusedBy: Readonly<Record<RefusalReason, Metric.Counter<number>>> = byLabel(
  refused,
  ["MailboxFull", "BacklogFull", "BufferFull", "ShuttingDown", "ResidencyFull"]
)

/**
 * Submissions that found their sector at `maxPendingKeys` (the safety limit on what a sector holds pending) and had
 * to wait for its flusher; those that waited in vain are also `refused{reason="BacklogFull"}`.
 */
export const pendingKeysLimitHits = Metric.counter("sectors_pending_keys_limit_hits_total", {
  description: "Submissions that found their sector at maxPendingKeys and waited for a batch to be taken",
  incremental: true
})

/** Sectors active. */
export const activeSectors = Metric.gauge("sectors_active", { description: "Active sectors" })

/** Sectors restarted after a defect. */
export const restarts = Metric.counter("sectors_restarts_total", {
  description: "Sectors restarted after dying of a defect",
  incremental: true
})

/** Entries dead-lettered because the sink rejected their data. */
export const deadLetters = Metric.counter("sectors_dead_letters_total", {
  description: "Entries the sink rejected for their data, recorded as dead letters",
  incremental: true
})

/**
 * Times a flusher's timer fired: a batch's deadline, or the grid point that ends an idle run's wait. Stays flat while
 * sectors are idle.
 */
export const timerWakeups = Metric.counter("sectors_flusher_timer_wakeups_total", {
  description: "Times a flusher woke up because its maxWait timer fired (a batch deadline, or the end of an idle wait)",
  incremental: true
})

/**
 * Times a flusher woke from a wait — for work, a trigger, its timer — and looked again: the field report's loop
 * iterations. A sector written to steadily costs about one a batch; ops accepted while it waits for a deadline (or
 * lingers until the next grid point) do not wake it, the timer does.
 */
export const flusherWakeups = Metric.counter("sectors_flusher_wakeups_total", {
  description: "Times a flusher woke from a wait (for work, a flush trigger or its timer) and looked at its sector again",
  incremental: true
})

/** Ops flushed during the last shutdown. */
export const shutdownFlushed = Metric.gauge("sectors_shutdown_flushed_ops", {
  description: "Ops flushed during the last shutdown"
})

/** Ops that could not be flushed during the last shutdown. */
export const shutdownUnflushed = Metric.gauge("sectors_shutdown_unflushed_ops", {
  description: "Accepted ops not durable when the last shutdown ended"
})

/** Duration of the last shutdown. */
export const shutdownSeconds = Metric.gauge("sectors_shutdown_duration_seconds", {
  description: "Duration of the last shutdown"
})

/** Host shutdowns; label `outcome`: `success` when every accepted op was durable at its end, else `failure`. */
export const shutdowns = Metric.counter("sectors_shutdowns_total", {
  description: "Host shutdowns, by outcome (success: nothing left unflushed; failure: ops left unflushed)",
  incremental: true
})

/** How a shutdown ended: the `outcome` label of `shutdowns`. */
export type ShutdownOutcome = "success" | "failure"

/** `shutdowns`, one series per outcome. */
export const shutdownsBy: Readonly<Record<ShutdownOutcome, Metric.Counter<number>>> = byLabel(
  shutdowns,
  ["success", "failure"],
  "outcome"
)

/**
 * Accepted ops that never became durable; label `reason`: `shutdown` (unflushed when the host's shutdown ended) or
 * `fenced` (dropped when another owner claimed the sector).
 */
export const opsLost = Metric.counter("sectors_ops_lost_total", {
  description: "Accepted ops that never became durable, by reason (shutdown, fenced)",
  incremental: true
})

/** Why accepted ops were lost: the `reason` label of `opsLost`. */
export type LossReason = "shutdown" | "fenced"

/** `opsLost`, one series per reason. */
export const opsLostBy: Readonly<Record<LossReason, Metric.Counter<number>>> = byLabel(opsLost, ["shutdown", "fenced"])

/**
 * Every series of this module: each metric without labels, each labelled counter once per known label value (a
 * labelled counter's unlabelled series is left out: it would be an extra, always-zero series).
 */
export const series: ReadonlyArray<Metric.Metric<never, unknown>> = [
  bufferedBytes,
  bufferBudgetBytes,
  sinkUp,
  evictions,
  passivations,
  opsReceived,
  opsPersisted,
  opsCollapsed,
  batches,
  batchOps,
  batchRows,
  accumulationSeconds,
  durableSeconds,
  persistSeconds,
  ...Object.values(flushTriggersBy),
  retries,
  ...Object.values(persistFailuresBy),
  circuitState,
  mailboxDepth,
  pendingKeys,
  pendingKeysUtilisation,
  ...Object.values(refusedBy),
  pendingKeysLimitHits,
  activeSectors,
  restarts,
  deadLetters,
  timerWakeups,
  flusherWakeups,
  shutdownFlushed,
  shutdownUnflushed,
  shutdownSeconds,
  ...Object.values(shutdownsBy),
  ...Object.values(opsLostBy)
]

/**
 * Puts every series of `series` in the current metric registry, at its zero unless something updated it already.
 * `SectorHost` runs it when it starts. Reading a series is what registers it: nothing is updated.
 */
export const register: Effect.Effect<void> = Effect.contextWith((context) =>
  Effect.sync(() => {
    for (const metric of series) metric.valueUnsafe(context)
  })
)

/** A number that a gauge's or a counter's series reads when the registry is read (`tally`). */
export interface Tally {
  value: number
}

/** The tallies of each registry, by metric. */
const tallies = new WeakMap<Metric.MetricRegistry, Map<Metric.Metric<never, unknown>, Tally>>()

/**
 * The series of `metric` in the registry of `context`, as a plain number for the hot path to add to, read when the
 * registry is (a scrape, `Metric.value`). An effect `Metric` update finds its series in the registry on every call
 * (three map lookups), and three of them came with every accepted submission (`opsReceived`, `pendingKeys`,
 * `bufferedBytes`). One tally per metric and registry, shared by every runtime that uses the registry, as the series
 * is; it starts where the series was.
 *
 * **Gotchas** once a metric has a tally, `Metric.update` of it does nothing: add to the tally instead.
 */
export const tally = (
  metric: Metric.Metric<number, Metric.GaugeState<number>> | Metric.Metric<number, Metric.CounterState<number>>,
  context: Context.Context<never>
): Tally => {
  const registry = Context.get(context, Metric.MetricRegistry)
  let byMetric = tallies.get(registry)
  if (byMetric === undefined) {
    byMetric = new Map()
    tallies.set(registry, byMetric)
  }
  const found = byMetric.get(metric)
  if (found !== undefined) return found
  const state: unknown = metric.valueUnsafe(context)
  const counter = metric.type === "Counter"
  const made: Tally = {
    value: counter ? (state as Metric.CounterState<number>).count : (state as Metric.GaugeState<number>).value
  }
  const incremental = counter && (state as Metric.CounterState<number>).incremental
  Metric.registerUnsafe(metric as Metric.Metric<number, unknown>, context, {
    get: () => counter ? { count: made.value, incremental } : { value: made.value },
    update: () => {},
    modify: () => {}
  })
  byMetric.set(metric, made)
  return made
}

/** One series of a counter per value of its label (`reason` unless said). */
function byLabel<const Value extends string>(
  metric: Metric.Counter<number>,
  values: ReadonlyArray<Value>,
  label = "reason"
): Record<Value, Metric.Counter<number>> {
  return Object.fromEntries(values.map((value) => [value, Metric.withAttributes(metric, { [label]: value })])) as Record<
    Value,
    Metric.Counter<number>
  >
}
