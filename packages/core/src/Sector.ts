/**
 * A sector actor: a bounded mailbox, the sector's state in memory, and two fibers under one supervisor.
 *
 * - The **intake** fiber takes submissions from the mailbox, gives every op the next seq (per sector, gap-free),
 *   applies it to the in-memory state and folds it into the pending buffer (`Batch.Pending`, one per `maxBatch`
 *   ops). Past `maxPendingKeys` pending keys it stops taking, the mailbox fills, and submitters get `MailboxFull`:
 *   backpressure instead of an unbounded heap.
 * - The **flusher** fiber asks `BatchPolicy.decide` what to do. Idle, it waits for the intake's signal with no timer
 *   armed (an idle sector wakes up for nothing); with ops pending below `minBatch` it also arms one timer for the
 *   batch's `BatchPolicy.deadline` (at most `maxWait` after its oldest op); on a trigger it takes the oldest buffer
 *   as a batch and persists it through `Resilience` (retries, circuit breaker). At most one batch is in flight; ops
 *   arriving meanwhile pile up and go out together next (natural batching), a backlog goes out as back-to-back
 *   `maxBatch` batches. A batch that fails goes back under the newer ops and is retried; nothing is dropped. A batch
 *   the sink rejects for its data is bisected with trial runs to the poison entry, which is dead-lettered; the rest
 *   commits.
 * - The **supervisor** restarts both after a defect with exponential backoff: the in-flight batch goes back to the
 *   buffer, the durable state is reloaded (claiming a new epoch) and the buffer is laid over it. Accepted ops are
 *   never lost to a restart.
 *
 * `drain` (scope close, passivation, host shutdown) stops intake (`ShuttingDown`), lets the intake take what is
 * already in the mailbox, flushes everything back-to-back and reports `{ flushed, unflushed }`.
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
import { type Batch, collapseRatio, type Entry, Pending, withEntries } from "./Batch.ts"
import * as BatchPolicy from "./BatchPolicy.ts"
import {
  DurableTimeout,
  InvalidOp,
  MailboxFull,
  SectorFenced,
  ShuttingDown,
  SinkError,
  SinkUnavailable
} from "./Errors.ts"
import * as Metrics from "./Metrics.ts"
import type * as Op from "./Op.ts"
import { Resilience } from "./Resilience.ts"
import { type DeadLetter, SectorSink } from "./SectorSink.ts"
import { SectorsConfig } from "./SectorsConfig.ts"
import * as SectorState from "./SectorState.ts"

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
}

/** Where a sector is in its life. */
export type Phase = "running" | "draining" | "stopped" | "fenced"

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
export type SubmitError = InvalidOp | MailboxFull | SinkUnavailable | ShuttingDown | DurableTimeout | SectorFenced

/** A running sector. */
export interface Sector {
  readonly sectorId: number
  /**
   * Submits ops (already validated, see `Op.decodeOps`). Fails with `MailboxFull` when the mailbox is full,
   * `SinkUnavailable` while the circuit is open, `ShuttingDown` once draining; in those cases nothing was applied.
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
  readonly flush: Effect.Effect<number, SinkUnavailable | ShuttingDown | SectorFenced>
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
  readonly deferred: Deferred.Deferred<readonly [number, number], ShuttingDown | SectorFenced>
}

interface Waiter {
  readonly seq: number
  readonly deferred: Deferred.Deferred<void, ShuttingDown | SectorFenced>
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
  SinkUnavailable: Metric.withAttributes(Metrics.refused, { reason: "SinkUnavailable" }),
  ShuttingDown: Metric.withAttributes(Metrics.refused, { reason: "ShuttingDown" })
}

const emptySubmission = new InvalidOp({ issues: [{ field: "ops", message: "must hold at least one op" }] })

/**
 * Activates a sector: loads (claims) it, starts its fibers in the current scope, and drains it when the scope
 * closes (bounded by `shutdownTimeout`).
 */
export const make = Effect.fnUntraced(function*(
  sectorId: number
): Effect.fn.Return<Sector, SinkError, Scope.Scope | SectorSink | SectorsConfig | Resilience> {
  const config = yield* SectorsConfig
  const sink = yield* SectorSink
  const resilience = yield* Resilience
  const clock = yield* Clock.Clock
  const context = yield* Effect.context<never>()
  const policy = config.policy

  const loaded = yield* resilience.retrying(sink.load(sectorId))

  // ---- state shared by the fibers (single-threaded: every change below happens without yielding) ----
  let epoch = loaded.epoch
  let state = SectorState.fromRows(loaded.rows)
  let persistedSeq = loaded.persistedSeq
  let persistedAt = loaded.persistedAt
  let nextSeq = Math.max(persistedSeq, SectorState.maxSeq(state)) + 1
  let phase: Phase = "running"
  const segments: Array<Pending> = []
  let inFlight: Pending | undefined
  let pendingOps = 0
  let pendingKeys = 0
  let flushTarget = 0
  let flusherIdle = false
  let intakeDone = false
  let needsResync = false
  const waiters: Array<Waiter> = []
  const counters = { received: 0, persisted: 0, collapsed: 0, batches: 0, deadLetters: 0, restarts: 0, timerWakeups: 0 }

  const mailbox = yield* Queue.bounded<Envelope, Cause.Done>(config.mailboxCapacity)
  const wake = yield* Latch.make(false)
  const space = yield* Latch.make(true)
  const now = () => clock.currentTimeMillisUnsafe()

  const addPendingKeys = (delta: number) => {
    pendingKeys += delta
    if (delta !== 0) Metrics.pendingKeys.modifyUnsafe(delta, context)
  }

  // ---- durable waiters ----
  const resolveWaiters = () => {
    let resolved = 0
    while (resolved < waiters.length && waiters[resolved]!.seq <= persistedSeq) {
      Deferred.doneUnsafe(waiters[resolved]!.deferred, Exit.void)
      resolved++
    }
    if (resolved > 0) waiters.splice(0, resolved)
  }

  const failWaiters = (error: ShuttingDown | SectorFenced) => {
    for (const waiter of waiters.splice(0)) Deferred.doneUnsafe(waiter.deferred, Exit.fail(error))
  }

  const awaitDurable = (seq: number): Effect.Effect<void, ShuttingDown | SectorFenced> =>
    Effect.suspend(() => {
      if (seq <= persistedSeq) return Effect.void
      if (phase === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
      if (phase === "stopped") return Effect.fail(new ShuttingDown({ sectorId }))
      const waiter: Waiter = { seq, deferred: Deferred.makeUnsafe() }
      let at = waiters.length
      while (at > 0 && waiters[at - 1]!.seq > seq) at--
      waiters.splice(at, 0, waiter)
      return Deferred.await(waiter.deferred)
    })

  // ---- intake ----
  const accept = (envelope: Envelope) => {
    Metrics.mailboxDepth.modifyUnsafe(-1, context)
    if (phase === "fenced") {
      Deferred.doneUnsafe(envelope.deferred, Exit.fail(new SectorFenced({ sectorId })))
      return
    }
    const at = now()
    const firstSeq = nextSeq
    let segment = segments[segments.length - 1]
    let keys = 0
    try {
      for (const op of envelope.ops) {
        if (segment === undefined || segment.ops >= policy.maxBatch) {
          segment = new Pending()
          segments.push(segment)
        }
        const before = segment.keys
        SectorState.apply(state, op, nextSeq)
        segment.add(op, nextSeq, at)
        keys += segment.keys - before
        nextSeq++
        pendingOps++
      }
    } catch (defect) {
      Deferred.doneUnsafe(envelope.deferred, Exit.die(defect))
      throw defect
    } finally {
      addPendingKeys(keys)
    }
    const count = nextSeq - firstSeq
    counters.received += count
    Metrics.opsReceived.updateUnsafe(count, context)
    Deferred.doneUnsafe(envelope.deferred, Exit.succeed([firstSeq, nextSeq - 1] as const))
    if (flusherIdle || pendingOps >= policy.minBatch) wake.openUnsafe()
  }

  const intake = Effect.gen(function*() {
    while (true) {
      if (pendingKeys >= policy.maxPendingKeys) {
        space.closeUnsafe()
        yield* space.await
        continue
      }
      const taken = yield* Effect.exit(Queue.take(mailbox))
      if (Exit.isFailure(taken)) break
      accept(taken.value)
      // take what else is waiting without suspending, while there is room
      while (pendingKeys < policy.maxPendingKeys) {
        const next = Queue.takeUnsafe(mailbox)
        if (next === undefined || Exit.isFailure(next)) break
        accept(next.value)
      }
    }
    intakeDone = true
    wake.openUnsafe()
  })

  // ---- flusher ----
  const takeSegment = (): Pending => {
    const segment = segments.shift()!
    pendingOps -= segment.ops
    addPendingKeys(-segment.keys)
    space.openUnsafe()
    return segment
  }

  /** Puts the in-flight buffer back under the newer ops (merged with the next one when both fit in a batch). */
  const requeue = (merge: boolean) => {
    const failed = inFlight
    if (failed === undefined) return
    inFlight = undefined
    const next = segments[0]
    if (merge && next !== undefined && failed.ops + next.ops <= policy.maxBatch) {
      const before = next.keys
      failed.merge(next)
      segments[0] = failed
      pendingOps += failed.ops - next.ops
      addPendingKeys(failed.keys - before)
    } else {
      segments.unshift(failed)
      pendingOps += failed.ops
      addPendingKeys(failed.keys)
    }
  }

  /** Reloads the durable state (a new claim) and lays every buffered, not yet durable change over it. */
  const resync = Effect.gen(function*() {
    const fresh = yield* resilience.retrying(sink.load(sectorId))
    epoch = fresh.epoch
    const next = SectorState.fromRows(fresh.rows)
    while (segments.length > 0 && segments[0]!.toSeq <= fresh.persistedSeq) takeSegment()
    for (const segment of segments) SectorState.applyEntries(next, segment.entries())
    state = next
    if (fresh.persistedSeq > persistedSeq) {
      persistedSeq = fresh.persistedSeq
      persistedAt = fresh.persistedAt
      resolveWaiters()
    }
    nextSeq = Math.max(nextSeq, persistedSeq + 1, SectorState.maxSeq(state) + 1)
  })

  const verify = (batch: Batch, entries: ReadonlyArray<Entry>) =>
    resilience.retrying(sink.verify(withEntries(batch, entries)))

  const isRejected = (error: SinkError | SinkUnavailable): error is SinkError =>
    error._tag === "SinkError" && error.reason === "Rejected"

  /** Bisects with trial runs to one entry that is rejected on its own; undefined if only a combination fails. */
  const findPoison = (
    batch: Batch,
    entries: ReadonlyArray<Entry>
  ): Effect.Effect<Entry | undefined, SinkError> =>
    Effect.gen(function*() {
      if (entries.length <= 1) return entries[0]
      const middle = entries.length >> 1
      for (const half of [entries.slice(0, middle), entries.slice(middle)]) {
        const trial = yield* Effect.exit(verify(batch, half))
        if (Exit.isSuccess(trial)) continue
        const error = Cause.findErrorOption(trial.cause)
        if (Option.isSome(error) && isRejected(error.value)) return yield* findPoison(batch, half)
        return yield* Effect.failCause(trial.cause)
      }
      return undefined
    })

  /** A rejected batch: dead-letter every poison entry, then persist the rest (same seq range). */
  const isolate = Effect.fnUntraced(function*(batch: Batch, rejection: SinkError) {
    const letters: Array<DeadLetter> = []
    let entries = batch.entries
    let error = rejection
    while (true) {
      const poison = yield* findPoison(batch, entries)
      if (poison === undefined) {
        return yield* new SinkError({
          reason: "Fatal",
          message: `batch ${batch.fromSeq}..${batch.toSeq} was rejected (${error.message}) but no single entry is at fault`,
          ...(error.code === undefined ? {} : { code: error.code })
        })
      }
      letters.push({ sectorId, seq: poison.seq, entry: poison, error: error.message, code: error.code, at: now() })
      entries = entries.filter((entry) => entry !== poison)
      const trial = yield* Effect.exit(verify(batch, entries))
      if (Exit.isSuccess(trial)) break
      const next = Cause.findErrorOption(trial.cause)
      if (Option.isSome(next) && isRejected(next.value)) {
        error = next.value
        continue
      }
      return yield* Effect.failCause(trial.cause)
    }
    yield* Effect.logWarning(`sector ${sectorId}: dead-lettering ${letters.length} rejected entries`).pipe(
      Effect.annotateLogs({ seqs: letters.map((letter) => letter.seq).join(","), error: error.message })
    )
    yield* resilience.retrying(sink.deadLetter(letters))
    yield* resilience.guard(sink.persist(withEntries(batch, entries)))
    counters.deadLetters += letters.length
    Metrics.deadLetters.updateUnsafe(letters.length, context)
    return letters.length
  })

  const persist = (batch: Batch) =>
    resilience.guard(sink.persist(batch)).pipe(
      Effect.as(0),
      Effect.catchIf(isRejected, (error) => isolate(batch, error)),
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
    const lost = pendingOps + (inFlight?.ops ?? 0)
    phase = "fenced"
    inFlight = undefined
    while (segments.length > 0) takeSegment()
    failWaiters(new SectorFenced({ sectorId }))
    Queue.endUnsafe(mailbox)
    yield* Effect.logError(`sector ${sectorId}: claimed by another owner; ${lost} accepted ops were not persisted`)
  })

  const flushOnce = Effect.fnUntraced(function*(trigger: BatchPolicy.Trigger) {
    Metrics.pendingKeysUtilisation.updateUnsafe(pendingKeys / policy.maxPendingKeys, context)
    const segment = takeSegment()
    inFlight = segment
    const batch = segment.toBatch(sectorId, epoch, trigger)
    const startedAt = now()
    triggerCounters[trigger].updateUnsafe(1, context)
    Metrics.accumulationSeconds.updateUnsafe((startedAt - segment.firstAt) / 1000, context)
    const outcome = yield* Effect.exit(persist(batch))
    if (Exit.isSuccess(outcome)) {
      inFlight = undefined
      persistedSeq = batch.toSeq
      persistedAt = now()
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
      resolveWaiters()
      // dead letters: memory still shows the rejected values; reload the truth
      if (outcome.value > 0) yield* resync
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
    requeue(true)
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
      const first = segments[0]
      const requested = phase === "draining"
        ? "shutdown"
        : first !== undefined && flushTarget >= first.fromSeq
        ? "manual"
        : undefined
      const decision = BatchPolicy.decide(policy, {
        ops: pendingOps,
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
        requeue(false)
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
    space.openUnsafe()
  }

  const unflushed = () => pendingOps + (inFlight?.ops ?? 0)

  /** Stops the sector at once: once, however many callers (the host's shutdown, passivation) race to it. */
  const stop: Effect.Effect<DrainReport> = yield* Effect.cached(Effect.gen(function*() {
    beginDrain()
    yield* Fiber.interrupt(supervisor)
    const refused = yield* Queue.clear(mailbox).pipe(Effect.orElseSucceed(() => [] as Array<Envelope>))
    for (const envelope of refused) {
      Metrics.mailboxDepth.modifyUnsafe(-1, context)
      Deferred.doneUnsafe(envelope.deferred, Exit.fail(new ShuttingDown({ sectorId })))
    }
    const left = unflushed()
    if (phase !== "fenced") {
      phase = "stopped"
      failWaiters(new ShuttingDown({ sectorId }))
    }
    addPendingKeys(-pendingKeys)
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

  const refuse = <E extends MailboxFull | SinkUnavailable | ShuttingDown>(error: E) => {
    refusedCounters[error._tag].updateUnsafe(1, context)
    return Effect.fail(error)
  }

  const submit = (ops: ReadonlyArray<Op.Op>, options?: SubmitOptions): Effect.Effect<Accepted, SubmitError> =>
    Effect.suspend((): Effect.Effect<Accepted, SubmitError> => {
      if (phase === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
      if (phase !== "running") return refuse(new ShuttingDown({ sectorId }))
      if (ops.length === 0) return Effect.fail(emptySubmission)
      const unavailable = resilience.admit()
      if (unavailable !== undefined) return refuse(unavailable)
      const envelope: Envelope = { ops, deferred: Deferred.makeUnsafe() }
      const accepted = Deferred.await(envelope.deferred).pipe(
        Effect.flatMap(([firstSeq, lastSeq]): Effect.Effect<Accepted, SubmitError> => {
          const result = { sectorId, accepted: ops.length, firstSeq, lastSeq }
          if (options?.ack !== "durable") {
            return Effect.succeed({ ...result, persisted: lastSeq <= persistedSeq })
          }
          const durable = awaitDurable(lastSeq).pipe(Effect.as({ ...result, persisted: true }))
          return options.durableTimeout === undefined ? durable : durable.pipe(
            Effect.timeoutOrElse({
              duration: options.durableTimeout,
              orElse: () => Effect.fail(new DurableTimeout({ sectorId, firstSeq, lastSeq, persistedSeq }))
            })
          )
        })
      )
      if (Queue.offerUnsafe(mailbox, envelope)) {
        Metrics.mailboxDepth.modifyUnsafe(1, context)
        return accepted
      }
      const full = new MailboxFull({
        sectorId,
        capacity: config.mailboxCapacity,
        retryAfterMillis: Duration.toMillis(config.mailboxRetryAfter)
      })
      if (options?.mailboxWait === undefined) return refuse(full)
      return Queue.offer(mailbox, envelope).pipe(
        Effect.timeoutOption(options.mailboxWait),
        Effect.flatMap((offered): Effect.Effect<Accepted, SubmitError> => {
          if (Option.isNone(offered)) return refuse(full)
          if (!offered.value) return refuse(new ShuttingDown({ sectorId }))
          Metrics.mailboxDepth.modifyUnsafe(1, context)
          return accepted
        })
      )
    })

  const flush = Effect.suspend((): Effect.Effect<number, SinkUnavailable | ShuttingDown | SectorFenced> => {
    if (phase === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
    const target = nextSeq - 1
    if (target <= persistedSeq) return Effect.succeed(persistedSeq)
    const unavailable = resilience.admit()
    if (unavailable !== undefined) return Effect.fail(unavailable)
    if (phase === "running" && target > flushTarget) {
      flushTarget = target
      wake.openUnsafe()
    }
    return awaitDurable(target).pipe(Effect.as(target))
  })

  const stats = Effect.sync((): SectorStats => ({
    sectorId,
    phase,
    epoch,
    mailboxDepth: Queue.sizeUnsafe(mailbox),
    mailboxCapacity: config.mailboxCapacity,
    pendingOps,
    pendingKeys,
    maxPendingKeys: policy.maxPendingKeys,
    oldestPendingMillis: segments[0] === undefined ? 0 : now() - segments[0].firstAt,
    inFlightOps: inFlight?.ops ?? 0,
    lastSeq: nextSeq - 1,
    persistedSeq,
    persistedAt,
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
    unflushed
  } satisfies Sector
})
