/**
 * A sector actor: a bounded mailbox, the sector's state in memory, and two fibers under one supervisor.
 *
 * - The **intake** fiber takes submissions from the mailbox, gives every op the next seq (per sector, gap-free),
 *   applies it to the in-memory state and folds it into the backlog (`internal/backlog`: `Batch.Pending` segments of
 *   `maxBatch` ops). Past `maxPendingKeys` pending keys it stops taking, the mailbox fills, and submitters get
 *   `MailboxFull`: backpressure instead of an unbounded heap.
 * - The **flusher** fiber asks `BatchPolicy.decide` what to do. Idle, it waits for the intake's signal with no timer
 *   armed (an idle sector wakes up for nothing); with ops pending below `minBatch` it also arms one timer for the
 *   batch's `BatchPolicy.deadline` (at most `maxWait` after its oldest op); on a trigger it takes the oldest buffer
 *   as a batch and persists it through `Resilience` (retries, circuit breaker). At most one batch is in flight; ops
 *   arriving meanwhile pile up and go out together next (natural batching), a backlog goes out as back-to-back
 *   `maxBatch` batches. A batch that fails goes back under the newer ops and is retried; nothing is dropped. A batch
 *   the sink rejects for its data is bisected with trial runs to the poison entries (`internal/isolation`), which
 *   are dead-lettered once and dropped from the buffer; the rest commits. Commits advance the durable watermark
 *   (`internal/watermark`), which answers `ack: "durable"` and `flush` waiters.
 * - The **supervisor** restarts both after a defect with exponential backoff: the in-flight batch goes back to the
 *   buffer, the durable state is reloaded (claiming a new epoch) and the buffer is laid over it. Accepted ops are
 *   never lost to a restart.
 *
 * `drain` (scope close, passivation, host shutdown) stops intake (`ShuttingDown`), lets the intake take what is
 * already in the mailbox, flushes everything back-to-back and reports `{ flushed, unflushed }`.
 *
 * Why this module is longer than ~450 lines: about 170 of them are the sector's public types (`Sector`,
 * `SectorStats`, `Accepted`, …) and their documentation, and the rest is one concept — the four parts above share one sector's state, which
 * they change without yielding in between, so they are written as one closure over it. Everything that stands on its
 * own (the backlog, the watermark, poison isolation, the trigger) lives in its own module with its own tests.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { absurd } from "effect/Function"
import { type Batch, cellBytes, collapseRatio, type IdempotencyRecord, opBytes, withEntries } from "./Batch.ts"
import * as BatchPolicy from "./BatchPolicy.ts"
import {
  BacklogFull,
  BufferFull,
  DurableTimeout,
  IdempotencyMismatch,
  InvalidOp,
  MailboxFull,
  SectorFenced,
  ShuttingDown,
  SinkError
} from "./Errors.ts"
import * as Metrics from "./Metrics.ts"
import type * as Op from "./Op.ts"
import { Resilience } from "./Resilience.ts"
import { type DeadLetter, SectorSink } from "./SectorSink.ts"
import { SectorsConfig } from "./SectorsConfig.ts"
import * as SectorState from "./SectorState.ts"
import { Backlog } from "./internal/backlog.ts"
import type { Budget } from "./internal/budget.ts"
import { IdempotencyStore, type Pending } from "./internal/idempotency.ts"
import * as Isolation from "./internal/isolation.ts"
import { Watermark } from "./internal/watermark.ts"

/** When `submit` returns: once the ops are accepted (seqs assigned, applied in memory) or once they are durable. */
export type Ack = "accepted" | "durable"

/** Options of `submit`. */
export interface SubmitOptions {
  /** Defaults to `accepted`. */
  readonly ack?: Ack | undefined
  /** With a full mailbox, wait up to this long for room instead of failing at once with `MailboxFull`. */
  readonly mailboxWait?: Duration.Input | undefined
  /** With `ack: "durable"`, stop waiting after this long with `DurableTimeout` (the ops stay accepted). */
  readonly durableTimeout?: Duration.Input | undefined
  /**
   * Makes a retry safe: a submission with a `key` the sector remembers (for `idempotencyTtl`, also after a crash or
   * by a new owner once its ops were durable) is answered with the original seqs (`replayed: true`) and applies
   * nothing; the same key with another `fingerprint` (whatever identifies the content for the caller, e.g. a hash
   * of the request body) fails with `IdempotencyMismatch`. A submission that was refused, or whose ops were lost,
   * leaves no key behind. `key`: 1 to 255 characters. `ttl`: how long this key is remembered, when not for
   * `idempotencyTtl` (a transport's request id needs only as long as its sender may resend).
   */
  readonly idempotency?: {
    readonly key: string
    readonly fingerprint: string
    readonly ttl?: Duration.Input | undefined
  } | undefined
}

/** The answer to an accepted submission. */
export interface Accepted {
  readonly sectorId: number
  /** Ops accepted: all of the submission. */
  readonly accepted: number
  readonly firstSeq: number
  readonly lastSeq: number
  /** Whether they are durable already (always true for `ack: "durable"`). */
  readonly persisted: boolean
  /** An earlier submission with the same idempotency key was answered again: nothing was applied this time. */
  readonly replayed?: boolean | undefined
}

/**
 * Where a sector is in its life. `passive`: not resident in this process; its figures were read from the sink
 * (nothing pending, nothing in memory).
 */
export type Phase = "running" | "draining" | "stopped" | "fenced" | "passive"

/** A sector's figures, for status pages and tests. */
export interface SectorStats {
  readonly sectorId: number
  readonly phase: Phase
  readonly epoch: number
  readonly mailboxDepth: number
  readonly mailboxCapacity: number
  readonly pendingOps: number
  readonly pendingKeys: number
  readonly maxPendingKeys: number
  /** Age of the oldest pending op (ms), 0 when nothing is pending. */
  readonly oldestPendingMillis: number
  readonly inFlightOps: number
  /** The last seq given out. */
  readonly lastSeq: number
  /** Every op up to this seq is durable. */
  readonly persistedSeq: number
  /** When the watermark last moved (ms since the epoch). */
  readonly persistedAt: number | undefined
  readonly entities: number
  readonly counters: {
    readonly received: number
    readonly persisted: number
    readonly collapsed: number
    readonly batches: number
    readonly deadLetters: number
    readonly restarts: number
    readonly timerWakeups: number
  }
}

/** What a drain achieved. */
export interface DrainReport {
  readonly sectorId: number
  /** Ops that became durable during the drain. */
  readonly flushed: number
  /** Accepted ops still not durable when the drain ended. */
  readonly unflushed: number
}

/** Why a submission failed. */
export type SubmitError =
  | InvalidOp
  | MailboxFull
  | BacklogFull
  | BufferFull
  | ShuttingDown
  | DurableTimeout
  | SectorFenced
  | IdempotencyMismatch

/** A running sector. */
export interface Sector {
  readonly sectorId: number
  /**
   * Submits ops (already validated, see `Op.decodeOps`). Fails with `MailboxFull` when the mailbox stays full for
   * `mailboxWait`, `BacklogFull` when the sector holds `maxPendingKeys` for as long, `BufferFull` when the host's
   * buffer budget cannot take it, `ShuttingDown` once draining; in those cases nothing was applied. An open circuit
   * does not refuse: the ops are held until the sink is back.
   *
   * **Gotchas** ops are trusted here: validate untrusted input with `Op.decodeOps` first. An empty submission
   * fails with `InvalidOp`.
   */
  readonly submit: (
    ops: ReadonlyArray<Op.Op>,
    options?: SubmitOptions
  ) => Effect.Effect<Accepted, SubmitError>
  /** Reads an entity from memory (read-your-writes: includes ops not yet durable). */
  readonly get: (entity: number) => Effect.Effect<Option.Option<SectorState.EntityView>>
  readonly stats: Effect.Effect<SectorStats>
  /** Waits until everything accepted so far is durable, flushing at once; returns the watermark. */
  readonly flush: Effect.Effect<number, ShuttingDown | SectorFenced>
  /** Stops intake, flushes everything, and reports; idempotent. Bound it with a timeout and then call `stop`. */
  readonly drain: Effect.Effect<DrainReport>
  /** Ends the sector now: stops its fibers and fails what still waits. Returns what was left unflushed. */
  readonly stop: Effect.Effect<DrainReport>
  /** Current phase (synchronous). */
  readonly phase: () => Phase
  /** Accepted ops not yet durable (synchronous). */
  readonly unflushed: () => number
}

interface Envelope {
  readonly ops: ReadonlyArray<Op.Op>
  /** The ops' `Batch.cellBytes`, measured once at submission. */
  readonly cells: ReadonlyArray<number>
  /** Bytes reserved in the budget for it until the sector folds it in. */
  readonly reserved: number
  readonly deferred: Deferred.Deferred<readonly [number, number], ShuttingDown | SectorFenced>
  /** Its idempotency key, entered in the store while it waits for seqs. */
  readonly pending: Pending | undefined
}

/** Options of `make`. */
export interface MakeOptions {
  /** The host-wide buffer budget this sector's held bytes count against; none: unbounded. */
  readonly budget?: Budget | undefined
  /** The host-wide store of idempotency keys; none: one of this sector's own, sized by the configuration. */
  readonly idempotency?: IdempotencyStore | undefined
}

/** The supervisor's signal that the sector's fibers must be started again. */
class Restart extends Data.TaggedError("Restart")<{ readonly cause: unknown }> {}

const triggerCounters = Object.fromEntries(
  BatchPolicy.triggers.map((trigger) => [trigger, Metric.withAttributes(Metrics.flushTriggers, { reason: trigger })])
) as Record<BatchPolicy.Trigger, typeof Metrics.flushTriggers>

const failureCounters = {
  Transient: Metric.withAttributes(Metrics.persistFailures, { reason: "Transient" }),
  Rejected: Metric.withAttributes(Metrics.persistFailures, { reason: "Rejected" }),
  Fenced: Metric.withAttributes(Metrics.persistFailures, { reason: "Fenced" }),
  Fatal: Metric.withAttributes(Metrics.persistFailures, { reason: "Fatal" }),
  Unavailable: Metric.withAttributes(Metrics.persistFailures, { reason: "Unavailable" })
}

const refusedCounters = {
  MailboxFull: Metric.withAttributes(Metrics.refused, { reason: "MailboxFull" }),
  BacklogFull: Metric.withAttributes(Metrics.refused, { reason: "BacklogFull" }),
  BufferFull: Metric.withAttributes(Metrics.refused, { reason: "BufferFull" }),
  ShuttingDown: Metric.withAttributes(Metrics.refused, { reason: "ShuttingDown" })
}

const emptySubmission = new InvalidOp({ issues: [{ field: "ops", message: "must hold at least one op" }] })
const badKey = new InvalidOp({
  issues: [{ field: "idempotency.key", message: "must be 1 to 255 characters" }]
})

/**
 * Activates a sector: loads (claims) it, starts its fibers in the current scope, and drains it when the scope
 * closes (bounded by `shutdownTimeout`).
 */
export const make = Effect.fnUntraced(function*(
  sectorId: number,
  options: MakeOptions = {}
): Effect.fn.Return<Sector, SinkError, Scope.Scope | SectorSink | SectorsConfig | Resilience> {
  const config = yield* SectorsConfig
  const sink = yield* SectorSink
  const resilience = yield* Resilience
  const clock = yield* Clock.Clock
  const context = yield* Effect.context<never>()
  const policy = config.policy
  const now = () => clock.currentTimeMillisUnsafe()
  const budget = options.budget
  const retryAfterMillis = Duration.toMillis(config.mailboxRetryAfter)

  const loaded = yield* resilience.retrying(sink.load(sectorId))
  const keys = options.idempotency ?? new IdempotencyStore({
    ttlMillis: Duration.toMillis(config.idempotencyTtl),
    maxKeys: config.maxIdempotencyKeys
  })
  keys.adopt(sectorId, loaded.idempotencyKeys ?? [], now())

  // ---- state shared by the fibers (single-threaded: every change below happens without yielding) ----
  let epoch = loaded.epoch
  let state = SectorState.fromRows(loaded.rows)
  let phase: Phase = "running"
  const watermark = new Watermark<ShuttingDown | SectorFenced>(loaded.persistedSeq, loaded.persistedAt)
  const backlog = new Backlog({
    nextSeq: Math.max(loaded.persistedSeq, SectorState.maxSeq(state)) + 1,
    maxBatch: policy.maxBatch,
    maxPendingKeys: policy.maxPendingKeys,
    onKeys: (delta) => Metrics.pendingKeys.modifyUnsafe(delta, context),
    onBytes: budget === undefined ? undefined : (delta) => budget.add(delta)
  })
  /** Keys of accepted submissions not yet durable, in seq order: each goes out with the batch of its last op. */
  let unstoredKeys: Array<IdempotencyRecord> = []
  let flushTarget = 0
  let flusherIdle = false
  let intakeDone = false
  let needsResync = false
  /** Entries were dead-lettered: memory still shows their values until a reload after the next commit. */
  let reloadAfterCommit = false
  const counters = { received: 0, persisted: 0, collapsed: 0, batches: 0, deadLetters: 0, restarts: 0, timerWakeups: 0 }

  const mailbox = yield* Queue.bounded<Envelope, Cause.Done>(config.mailboxCapacity)
  const wake = yield* Latch.make(false)

  const refuseWait = () =>
    phase === "fenced"
      ? new SectorFenced({ sectorId })
      : phase === "stopped"
      ? new ShuttingDown({ sectorId })
      : undefined

  // ---- intake ----
  /** An envelope leaves the mailbox: its reservation goes back (folded in, the backlog counts what it holds). */
  const leave = (envelope: Envelope) => {
    Metrics.mailboxDepth.modifyUnsafe(-1, context)
    budget?.add(-envelope.reserved)
  }

  /** A submission leaves without seqs: it fails, and its key (if any) is forgotten so that a retry applies it. */
  const reject = (envelope: Envelope, error: ShuttingDown | SectorFenced) => {
    if (envelope.pending !== undefined) keys.forget(sectorId, envelope.pending.key, envelope.pending)
    Deferred.doneUnsafe(envelope.deferred, Exit.fail(error))
  }

  /** Accepted keys whose ops will not become durable here (fenced, stopped): forgotten, so a retry applies them. */
  const forgetUnstoredKeys = () => {
    for (const record of unstoredKeys) keys.forget(sectorId, record.key, record)
    unstoredKeys = []
  }

  const accept = (envelope: Envelope) => {
    leave(envelope)
    if (phase === "fenced") {
      reject(envelope, new SectorFenced({ sectorId }))
      return
    }
    let firstSeq: number
    try {
      firstSeq = backlog.accept(envelope.ops, now(), (op, seq) => SectorState.apply(state, op, seq), envelope.cells)
    } catch (defect) {
      Deferred.doneUnsafe(envelope.deferred, Exit.die(defect))
      throw defect
    }
    const count = envelope.ops.length
    const lastSeq = backlog.nextSeq - 1
    counters.received += count
    Metrics.opsReceived.updateUnsafe(count, context)
    if (envelope.pending !== undefined) unstoredKeys.push(keys.accept(envelope.pending, firstSeq, lastSeq, now()))
    Deferred.doneUnsafe(envelope.deferred, Exit.succeed([firstSeq, lastSeq] as const))
    if (flusherIdle || backlog.ops >= policy.minBatch) wake.openUnsafe()
  }

  const intake = Effect.gen(function*() {
    while (true) {
      const taken = yield* Effect.exit(Queue.take(mailbox))
      if (Exit.isFailure(taken)) break
      accept(taken.value)
      // take what else is waiting without suspending
      while (true) {
        const next = Queue.takeUnsafe(mailbox)
        if (next === undefined || Exit.isFailure(next)) break
        accept(next.value)
      }
    }
    intakeDone = true
    wake.openUnsafe()
  })

  // ---- flusher ----

  /** Reloads the durable state (a new claim) and lays every buffered, not yet durable change over it. */
  const resync = Effect.gen(function*() {
    const fresh = yield* resilience.retrying(sink.load(sectorId))
    epoch = fresh.epoch
    keys.adopt(sectorId, fresh.idempotencyKeys ?? [], now())
    const next = SectorState.fromRows(fresh.rows)
    backlog.dropThrough(fresh.persistedSeq)
    for (const entries of backlog.entries()) SectorState.applyEntries(next, entries)
    state = next
    watermark.advance(fresh.persistedSeq, fresh.persistedAt)
    backlog.nextSeq = Math.max(backlog.nextSeq, watermark.seq + 1, SectorState.maxSeq(state) + 1)
  })

  /** A rejected batch: dead-letter every poison entry once, drop it from the buffer, then persist the rest. */
  const deadLetterPoison = Effect.fnUntraced(function*(batch: Batch, rejection: SinkError) {
    const { poison, rest } = yield* Isolation.isolate(
      `batch ${batch.fromSeq}..${batch.toSeq}`,
      batch.entries,
      rejection,
      (entries) => resilience.retrying(sink.verify(withEntries(batch, entries)))
    )
    const at = now()
    const letters: Array<DeadLetter> = poison.map(({ entry, error }) => ({
      sectorId,
      seq: entry.seq,
      entry,
      error: error.message,
      code: error.code,
      at
    }))
    yield* Effect.logWarning(`sector ${sectorId}: dead-lettering ${letters.length} rejected entries`).pipe(
      Effect.annotateLogs({
        seqs: letters.map((letter) => letter.seq).join(","),
        error: poison[poison.length - 1]!.error.message
      })
    )
    yield* resilience.retrying(sink.deadLetter(letters))
    // recorded: the entries never go out again, even if the persist below fails and the segment is retried
    for (const { entry } of poison) backlog.discard(entry)
    counters.deadLetters += letters.length
    Metrics.deadLetters.updateUnsafe(letters.length, context)
    reloadAfterCommit = true
    yield* resilience.guard(sink.persist(withEntries(batch, rest)))
    return letters.length
  })

  const persist = (batch: Batch) =>
    resilience.guard(sink.persist(batch)).pipe(
      Effect.as(0),
      Effect.catchIf(Isolation.isRejected, (error) => deadLetterPoison(batch, error)),
      Effect.withSpan("Sector.persist", {
        attributes: {
          "sector.id": sectorId,
          "batch.ops": batch.ops,
          "batch.rows": batch.entries.length,
          "batch.trigger": batch.trigger,
          "batch.collapse_ratio": collapseRatio(batch)
        }
      })
    )

  const becomeFenced = Effect.fnUntraced(function*() {
    const lost = backlog.clear()
    forgetUnstoredKeys()
    phase = "fenced"
    watermark.failAll(new SectorFenced({ sectorId }))
    Queue.endUnsafe(mailbox)
    yield* Effect.logError(`sector ${sectorId}: claimed by another owner; ${lost} accepted ops were not persisted`)
  })

  /** How many of the unstored keys (a prefix: they are in seq order) a batch up to `toSeq` makes durable. */
  const keysThrough = (toSeq: number) => {
    let count = 0
    while (count < unstoredKeys.length && unstoredKeys[count]!.lastSeq <= toSeq) count++
    return count
  }

  /** The batch with the keys of the submissions whose last op it makes durable. */
  const withKeys = (batch: Batch, at: number): Batch => {
    const count = keysThrough(batch.toSeq)
    return count === 0 ? batch : {
      ...batch,
      idempotencyKeys: unstoredKeys.slice(0, count),
      forgetKeysExpiredBy: at
    }
  }

  const flushOnce = Effect.fnUntraced(function*(trigger: BatchPolicy.Trigger) {
    Metrics.pendingKeysUtilisation.updateUnsafe(backlog.keys / policy.maxPendingKeys, context)
    const segment = backlog.take()
    const startedAt = now()
    const batch = withKeys(segment.toBatch(sectorId, epoch, trigger), startedAt)
    triggerCounters[trigger].updateUnsafe(1, context)
    Metrics.accumulationSeconds.updateUnsafe((startedAt - segment.firstAt) / 1000, context)
    const outcome = yield* Effect.exit(persist(batch))
    if (Exit.isSuccess(outcome)) {
      backlog.commit()
      unstoredKeys.splice(0, keysThrough(batch.toSeq))
      const persistedAt = now()
      const rows = batch.entries.length - outcome.value
      counters.persisted += batch.ops
      counters.collapsed += batch.ops - rows
      counters.batches++
      Metrics.persistSeconds.updateUnsafe((persistedAt - startedAt) / 1000, context)
      Metrics.opsPersisted.updateUnsafe(batch.ops, context)
      Metrics.opsCollapsed.updateUnsafe(batch.ops - rows, context)
      Metrics.batches.updateUnsafe(1, context)
      Metrics.batchOps.updateUnsafe(batch.ops, context)
      Metrics.batchRows.updateUnsafe(rows, context)
      watermark.advance(batch.toSeq, persistedAt)
      // dead letters: memory still shows the rejected values; reload the truth
      if (reloadAfterCommit) {
        yield* resync
        reloadAfterCommit = false
      }
      return
    }
    const error = Cause.findErrorOption(outcome.cause)
    if (Option.isNone(error)) return yield* Effect.failCause(outcome.cause) // a defect or an interruption
    const failure = error.value
    if (failure._tag === "SinkError" && failure.reason === "Fenced") {
      failureCounters.Fenced.updateUnsafe(1, context)
      return yield* becomeFenced()
    }
    failureCounters[failure._tag === "SinkUnavailable" ? "Unavailable" : failure.reason].updateUnsafe(1, context)
    backlog.requeue(true)
    const delay = failure._tag === "SinkUnavailable"
      ? Math.max(failure.retryAfterMillis, Duration.toMillis(config.retryBase))
      : Duration.toMillis(config.retryBase)
    if (failure._tag === "SinkError") {
      yield* Effect.logWarning(`sector ${sectorId}: persist failed (${failure.reason}): ${failure.message}`)
    }
    yield* Effect.sleep(delay)
  })

  const flusher = Effect.gen(function*() {
    while (phase !== "fenced") {
      wake.closeUnsafe()
      const first = backlog.first
      const requested = phase === "draining"
        ? "shutdown"
        : first !== undefined && flushTarget >= first.fromSeq
        ? "manual"
        : undefined
      const decision = BatchPolicy.decide(policy, {
        ops: backlog.ops,
        oldestAt: first?.firstAt ?? 0,
        now: now(),
        requested
      })
      switch (decision._tag) {
        case "Idle": {
          if (intakeDone) return
          flusherIdle = true
          yield* wake.await
          flusherIdle = false
          break
        }
        case "Wait": {
          const woken = yield* Effect.timeoutOption(wake.await, decision.millis)
          if (Option.isNone(woken)) {
            counters.timerWakeups++
            Metrics.timerWakeups.updateUnsafe(1, context)
          }
          break
        }
        case "Flush": {
          yield* flushOnce(decision.trigger)
          break
        }
        default:
          absurd(decision)
      }
    }
  })

  // ---- supervisor ----
  const incarnation = Effect.gen(function*() {
    if (needsResync) {
      yield* resync.pipe(Effect.mapError((cause) => new Restart({ cause })))
      needsResync = false
    }
    yield* Effect.all([intake, flusher], { concurrency: 2, discard: true })
  }).pipe(
    Effect.catchDefect((defect) =>
      Effect.gen(function*() {
        counters.restarts++
        Metrics.restarts.updateUnsafe(1, context)
        backlog.requeue(false)
        flusherIdle = false
        needsResync = true
        yield* Effect.logError(`sector ${sectorId}: died of a defect, restarting`, defect)
        return yield* new Restart({ cause: defect })
      })
    ),
    Effect.tapError((restart) =>
      restart.cause instanceof SinkError
        ? Effect.logWarning(`sector ${sectorId}: cannot reload (${restart.cause.message}), retrying`)
        : Effect.void
    )
  )

  const restartSchedule = Schedule.min([Schedule.exponential(config.restartBase), Schedule.spaced(config.restartMax)])
  const supervisor = yield* incarnation.pipe(
    Effect.retry(restartSchedule),
    Effect.annotateLogs({ sectorId }),
    Effect.forkScoped({ startImmediately: true })
  )
  Metrics.activeSectors.modifyUnsafe(1, context)

  // ---- lifecycle ----
  let drainStartedAt = 0

  const beginDrain = () => {
    if (phase !== "running") return
    phase = "draining"
    drainStartedAt = counters.persisted
    Queue.endUnsafe(mailbox)
    wake.openUnsafe()
  }

  /** Stops the sector at once: once, however many callers (the host's shutdown, passivation) race to it. */
  const stop: Effect.Effect<DrainReport> = yield* Effect.cached(Effect.gen(function*() {
    beginDrain()
    yield* Fiber.interrupt(supervisor)
    const refused = yield* Queue.clear(mailbox).pipe(Effect.orElseSucceed(() => [] as Array<Envelope>))
    for (const envelope of refused) {
      leave(envelope)
      reject(envelope, new ShuttingDown({ sectorId }))
    }
    const left = backlog.unflushed
    forgetUnstoredKeys()
    if (phase !== "fenced") {
      phase = "stopped"
      watermark.failAll(new ShuttingDown({ sectorId }))
    }
    backlog.detach()
    Metrics.activeSectors.modifyUnsafe(-1, context)
    return { sectorId, flushed: counters.persisted - drainStartedAt, unflushed: left }
  }))

  /** Drains (the mailbox, then a last flush), then stops; after `stop`, just its report. */
  const drain: Effect.Effect<DrainReport> = Effect.suspend(() => {
    beginDrain()
    return Fiber.await(supervisor).pipe(Effect.andThen(stop))
  })

  yield* Effect.addFinalizer(() =>
    drain.pipe(
      Effect.timeoutOption(config.shutdownTimeout),
      Effect.andThen(stop),
      Effect.tap((result) =>
        result.unflushed > 0
          ? Effect.logWarning(`sector ${sectorId}: stopped with ${result.unflushed} accepted ops not persisted`)
          : Effect.void
      )
    )
  )

  const refuse = <E extends MailboxFull | BacklogFull | BufferFull | ShuttingDown>(error: E) => {
    refusedCounters[error._tag].updateUnsafe(1, context)
    return Effect.fail(error)
  }

  const submit = (ops: ReadonlyArray<Op.Op>, options?: SubmitOptions): Effect.Effect<Accepted, SubmitError> =>
    Effect.suspend((): Effect.Effect<Accepted, SubmitError> => {
      if (phase === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
      if (phase !== "running") return refuse(new ShuttingDown({ sectorId }))
      if (ops.length === 0) return Effect.fail(emptySubmission)
      const idempotency = options?.idempotency
      if (idempotency !== undefined) {
        if (idempotency.key.length === 0 || idempotency.key.length > 255) return Effect.fail(badKey)
        const known = keys.find(sectorId, idempotency.key, now())
        if (known !== undefined) {
          if (known.fingerprint !== idempotency.fingerprint) {
            return Effect.fail(new IdempotencyMismatch({ sectorId, key: idempotency.key }))
          }
          return known._tag === "Accepted"
            ? answer(known.firstSeq, known.lastSeq, options, true)
            : Effect.flatMap(
              Deferred.await(known.seqs),
              ([firstSeq, lastSeq]) => answer(firstSeq, lastSeq, options, true)
            )
        }
      }
      if (!backlog.full) return enqueue(ops, options)
      // at maxPendingKeys: wait (bounded) for the flusher to take a batch, or refuse
      return backlog.awaitSpace().pipe(
        Effect.timeoutOption(options?.mailboxWait ?? config.mailboxWait),
        Effect.flatMap((): Effect.Effect<Accepted, SubmitError> => {
          if (phase === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
          if (phase !== "running") return refuse(new ShuttingDown({ sectorId }))
          return backlog.full
            ? refuse(new BacklogFull({ sectorId, maxPendingKeys: policy.maxPendingKeys, retryAfterMillis }))
            : enqueue(ops, options)
        })
      )
    })

  /** The answer to a submission with seqs `firstSeq..lastSeq`, once durable if `ack: "durable"` asks for it. */
  const answer = (
    firstSeq: number,
    lastSeq: number,
    options: SubmitOptions | undefined,
    replayed: boolean
  ): Effect.Effect<Accepted, SubmitError> => {
    const result = { sectorId, accepted: lastSeq - firstSeq + 1, firstSeq, lastSeq, ...(replayed ? { replayed } : {}) }
    if (options?.ack !== "durable") return Effect.succeed({ ...result, persisted: lastSeq <= watermark.seq })
    const durable = watermark.await(lastSeq, refuseWait).pipe(Effect.as({ ...result, persisted: true }))
    return options.durableTimeout === undefined ? durable : durable.pipe(
      Effect.timeoutOrElse({
        duration: options.durableTimeout,
        orElse: () => Effect.fail(new DurableTimeout({ sectorId, firstSeq, lastSeq, persistedSeq: watermark.seq }))
      })
    )
  }

  /** Reserves the submission's bytes and puts it into the mailbox (waiting up to `mailboxWait` for room). */
  const enqueue = (ops: ReadonlyArray<Op.Op>, options: SubmitOptions | undefined): Effect.Effect<Accepted, SubmitError> =>
    Effect.suspend((): Effect.Effect<Accepted, SubmitError> => {
      const cells = ops.map(cellBytes)
      let reserved = 0
      if (budget !== undefined) {
        for (let i = 0; i < ops.length; i++) reserved += opBytes(ops[i]!, cells[i])
        if (!budget.tryReserve(reserved)) {
          return refuse(
            new BufferFull({ sectorId, bufferedBytes: budget.used, budgetBytes: budget.max, retryAfterMillis })
          )
        }
      }
      const deferred = Deferred.makeUnsafe<readonly [number, number], ShuttingDown | SectorFenced>()
      const key = options?.idempotency
      const pending = key === undefined
        ? undefined
        : keys.begin(
          sectorId,
          key.key,
          key.fingerprint,
          deferred,
          now(),
          key.ttl === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(key.ttl))
        )
      const giveBack = () => {
        budget?.add(-reserved)
        if (pending !== undefined) keys.forget(sectorId, pending.key, pending)
      }
      const envelope: Envelope = { ops, cells, reserved, deferred, pending }
      const accepted = Deferred.await(envelope.deferred).pipe(
        Effect.flatMap(([firstSeq, lastSeq]) => answer(firstSeq, lastSeq, options, false))
      )
      if (Queue.offerUnsafe(mailbox, envelope)) {
        Metrics.mailboxDepth.modifyUnsafe(1, context)
        return accepted
      }
      const full = new MailboxFull({ sectorId, capacity: config.mailboxCapacity, retryAfterMillis })
      if (options?.mailboxWait === undefined) {
        giveBack()
        return refuse(full)
      }
      return Queue.offer(mailbox, envelope).pipe(
        Effect.timeoutOption(options.mailboxWait),
        Effect.onInterrupt(() => Effect.sync(giveBack)),
        Effect.flatMap((offered): Effect.Effect<Accepted, SubmitError> => {
          if (Option.isNone(offered) || !offered.value) {
            giveBack()
            return refuse(Option.isNone(offered) ? full : new ShuttingDown({ sectorId }))
          }
          Metrics.mailboxDepth.modifyUnsafe(1, context)
          return accepted
        })
      )
    })

  const flush = Effect.suspend((): Effect.Effect<number, ShuttingDown | SectorFenced> => {
    if (phase === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
    const target = backlog.nextSeq - 1
    if (target <= watermark.seq) return Effect.succeed(watermark.seq)
    if (phase === "running" && target > flushTarget) {
      flushTarget = target
      wake.openUnsafe()
    }
    return watermark.await(target, refuseWait).pipe(Effect.as(target))
  })

  const stats = Effect.sync((): SectorStats => ({
    sectorId,
    phase,
    epoch,
    mailboxDepth: Queue.sizeUnsafe(mailbox),
    mailboxCapacity: config.mailboxCapacity,
    pendingOps: backlog.ops,
    pendingKeys: backlog.keys,
    maxPendingKeys: policy.maxPendingKeys,
    oldestPendingMillis: backlog.first === undefined ? 0 : now() - backlog.first.firstAt,
    inFlightOps: backlog.inFlight?.ops ?? 0,
    lastSeq: backlog.nextSeq - 1,
    persistedSeq: watermark.seq,
    persistedAt: watermark.at,
    entities: SectorState.size(state),
    counters: { ...counters }
  }))

  return {
    sectorId,
    submit,
    get: (entity) => Effect.sync(() => Option.fromUndefinedOr(SectorState.view(state, entity))),
    stats,
    flush,
    drain,
    stop,
    phase: () => phase,
    unflushed: () => backlog.unflushed
  } satisfies Sector
})
