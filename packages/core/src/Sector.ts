/**
 * A sector actor: a bounded mailbox, the sector's state in memory, and two fibers under one supervisor — the
 * fibers and the mailbox only while it has work. An idle resident sector is its fields (state, seq, watermark,
 * epoch, an empty backlog) and nothing that runs: a submission starts its fibers, and they end at the first point of
 * the `maxWait` grid at which everything it accepted is durable and nothing new came (at once under a zero
 * `maxWait`), so holding many idle sectors costs memory for their data and no CPU, while a sector written to steadily
 * keeps its fibers from batch to batch instead of making them anew for each one.
 *
 * - **Accepting** a submission gives every op the next seq (per sector, gap-free), applies it to the in-memory state
 *   and folds it into the backlog (`internal/backlog`: `Batch.Pending` segments of `maxBatch` ops). A sector that is
 *   free — running, nothing waiting in its mailbox, nothing to reload — accepts in the submitter's own fiber, with
 *   no hand-off (single-threaded: nothing runs in between, so the order of calls is the order of seqs). Otherwise
 *   the submission waits in the mailbox and the **intake** fiber accepts it, in order, once the sector can: while
 *   it reloads after a defect, say. A full mailbox answers `MailboxFull`. At `maxPendingKeys` pending keys a
 *   submission waits (at most `mailboxWait`, else `BacklogFull`) until a batch goes out, and the sector sends its
 *   batch at once: backpressure instead of an unbounded heap.
 * - The **flusher** fiber asks `BatchPolicy.decide` what to do. With ops pending below `minBatch` it waits for the
 *   batch's `BatchPolicy.deadline` (at most `maxWait` after its oldest op) on the host's timer for that deadline,
 *   shared with every sector due at it (`internal/deadlines`), so that they wake and flush together; on a trigger it
 *   takes the oldest buffer as a batch and persists it through `Resilience` (retries, circuit breaker). At most one
 *   batch is in flight; ops arriving meanwhile pile up and go out together next (natural batching), a backlog goes
 *   out as back-to-back `maxBatch` batches. A batch that fails goes back under the newer ops and is retried; nothing is
 *   dropped. A batch the sink rejects for its data is bisected with trial runs to the poison entries
 *   (`internal/isolation`), which are dead-lettered once and dropped from the buffer; the rest commits. Commits
 *   advance the durable watermark (`internal/watermark`), which answers `ack: "durable"` and `flush` waiters. With
 *   nothing left — mailbox empty, nothing pending or in flight — it waits for work until the next grid point (on
 *   the deadline timer the sectors due there share) and then ends the run: the intake stops, no timer is armed, and
 *   the next submission starts a new run. An op accepted while it waits so is due at that grid point anyway: it does
 *   not wake the flusher (only `minBatch`, a full backlog or a flush does), the timer does — one wakeup a batch.
 * - The **supervisor** restarts both after a defect with exponential backoff: the in-flight batch goes back to the
 *   buffer, the durable state is reloaded (claiming a new epoch) and the buffer is laid over it. Accepted ops are
 *   never lost to a restart.
 *
 * The fibers run with the services of the host's `Runtime` (captured once), not with those of the request that
 * woke the sector. A sector is a class rather than a closure so that a resident one costs its fields only.
 *
 * `drain` (scope close, passivation, host shutdown) stops intake (`ShuttingDown`), lets the intake take what is
 * already in the mailbox, flushes everything back-to-back and reports `{ flushed, unflushed }`.
 *
 * Why this module is longer than ~450 lines: about 170 of them are the sector's public types (`Sector`,
 * `SectorStats`, `Accepted`, …) and their documentation, and the rest is one concept — the parts above share one
 * sector's state, which they change without yielding in between. Everything that stands on its own (the backlog,
 * the watermark, poison isolation, the trigger) lives in its own module with its own tests.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { absurd } from "effect/Function"
import {
  type Batch,
  cellBytes,
  collapseRatio,
  type DataLengths,
  type IdempotencyRecord,
  opBytes,
  withEntries
} from "./Batch.ts"
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
  SinkError,
  type SinkUnavailable
} from "./Errors.ts"
import * as Metrics from "./Metrics.ts"
import type * as Op from "./Op.ts"
import { Resilience } from "./Resilience.ts"
import { type DeadLetter, type LoadedSector, SectorSink } from "./SectorSink.ts"
import { SectorsConfig } from "./SectorsConfig.ts"
import * as SectorState from "./SectorState.ts"
import { Backlog } from "./internal/backlog.ts"
import type { Budget } from "./internal/budget.ts"
import { Deadlines } from "./internal/deadlines.ts"
import { Expiries } from "./internal/expiries.ts"
import { IdempotencyStore, type Pending } from "./internal/idempotency.ts"
import * as Isolation from "./internal/isolation.ts"
import { retryAfter } from "./internal/retry.ts"
import { records, withOutcome } from "./internal/tracing.ts"
import { type Deadline, Watermark } from "./internal/watermark.ts"

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
   * With `ack: "durable"`, called once the ops have their seqs (accepted, or recognised by their key), before the
   * wait for durability: a caller that keeps the order of its submissions (a stream of frames, say) can send the
   * next one then instead of after the wait. Not called for a submission refused before it had seqs.
   */
  readonly onAccepted?: ((accepted: Omit<Accepted, "persisted">) => void) | undefined
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
  /** Whether its fibers are at work: false while it is idle (nothing runs, nothing can wake it but a request). */
  readonly awake: boolean
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
  /**
   * Accepts `ops` (an accepted ack, no idempotency key) at once, synchronously, when nothing stands in the way: the
   * sector is awake and free (see `submit`), its backlog and the host's budget have room. `undefined` otherwise — then
   * `submit` them, which waits, refuses or wakes the sector as it must; nothing was applied. A defect applying an op
   * is the exit's (the sector restarts, as with `submit`).
   */
  readonly tryAccept: (
    ops: ReadonlyArray<Op.Op>,
    dataLengths?: DataLengths
  ) => Exit.Exit<Accepted> | undefined
  /**
   * `tryAccept` with a durable ack, for a transport that answers without a fiber per wait: the ops are accepted at once
   * when `tryAccept` would take them (`undefined` otherwise: nothing applied, `onDurable` never called), and then
   * `onDurable` hears once what `submit` with `ack: "durable"` answers — the `Accepted` (`persisted: true`) once they
   * are durable, or `DurableTimeout` after `timeout` (none: no limit), `SectorFenced`, `ShuttingDown` — unless the
   * returned `cancel` comes first. `onDurable` runs where the wait ends (a commit, the deadlines' timer): it must
   * not throw. A defect applying an op is the exit's, as with `tryAccept`.
   */
  readonly tryAcceptDurable: (
    ops: ReadonlyArray<Op.Op>,
    options: {
      readonly dataLengths?: DataLengths | undefined
      readonly timeout?: Duration.Input | undefined
      readonly onDurable: (exit: Exit.Exit<Accepted, DurableWaitError>) => void
    }
  ) => Exit.Exit<() => void> | undefined
}

/** What `tryAcceptDurable` returns when the wait cannot be cancelled any more (it ended at once). */
const noCancel = () => {}

/** How a durable wait for accepted ops can fail. */
export type DurableWaitError = DurableTimeout | SectorFenced | ShuttingDown

interface Envelope {
  readonly ops: ReadonlyArray<Op.Op>
  /** The ops' `Batch.cellBytes`, measured once at submission. */
  readonly cells: ReadonlyArray<number>
  /** Bytes reserved in the budget for it until the sector folds it in. */
  readonly reserved: number
  /** Its submitter's wait for seqs; none when the submitter takes them from `accept` itself (`tryAccept`). */
  readonly deferred: Deferred.Deferred<readonly [number, number], ShuttingDown | SectorFenced> | undefined
  /** Its idempotency key, entered in the store while it waits for seqs. */
  readonly pending: Pending | undefined
}

/** Options of `runtime`. */
export interface RuntimeOptions {
  /** The host-wide buffer budget every sector's held bytes count against; none: unbounded. */
  readonly budget?: Budget | undefined
  /** The host-wide store of idempotency keys; none: one of its own, sized by the configuration. */
  readonly idempotency?: IdempotencyStore | undefined
}

/** Options of `make`. */
export type MakeOptions = RuntimeOptions

/** The supervisor's signal that the sector's fibers must be started again. */
class Restart extends Data.TaggedError("Restart")<{ readonly cause: unknown }> {}

const emptySubmission = new InvalidOp({ issues: [{ field: "ops", message: "must hold at least one op" }] })
const badKey = new InvalidOp({
  issues: [{ field: "idempotency.key", message: "must be 1 to 255 characters" }]
})

/**
 * What every sector of a host shares — the services, the configuration, the budget, the idempotency keys, the
 * restart schedule — so that a sector holds one reference to it instead of a copy of each. Its fibers run with the
 * services captured here, not with those of whichever request woke the sector.
 */
export interface Runtime {
  readonly config: SectorsConfig["Service"]
  readonly sink: SectorSink["Service"]
  readonly resilience: Resilience["Service"]
  readonly clock: Clock.Clock
  /** The flushers' deadline timers: one per deadline, shared by every sector due at it. */
  readonly deadlines: Deadlines
  /** The deadlines of durable waits (`durableTimeout`): one timer for the host's sectors. */
  readonly expiries: Expiries
  readonly context: Context.Context<never>
  /** Whether the host's tracer records spans (`internal/tracing`): each batch's `Sector.persist` span only then. */
  readonly traced: boolean
  readonly budget: Budget | undefined
  readonly keys: IdempotencyStore
  readonly retryAfterMillis: number
  readonly restartSchedule: Schedule.Schedule<unknown, unknown>
  /** The pending-keys gauge and the budget, as the backlogs report to them. */
  readonly onKeys: (delta: number) => void
  readonly onBytes: ((delta: number) => void) | undefined
  /** The `opsReceived` counter's series, added to as ops are accepted. */
  readonly received: Metrics.Tally
  /** Loads (claims) a sector and returns it, resident and idle: no fiber runs until it is given work. */
  readonly activate: (sectorId: number) => Effect.Effect<Sector, SinkError>
}

/** The runtime of a host's sectors (see `Runtime`). */
export const runtime = Effect.fnUntraced(function*(
  options: RuntimeOptions = {}
): Effect.fn.Return<Runtime, never, SectorSink | SectorsConfig | Resilience> {
  const config = yield* SectorsConfig
  const context = yield* Effect.context<never>()
  const budget = options.budget
  const clock = yield* Clock.Clock
  const pendingKeys = Metrics.tally(Metrics.pendingKeys, context)
  const self: Runtime = {
    config,
    sink: yield* SectorSink,
    resilience: yield* Resilience,
    clock,
    deadlines: new Deadlines(clock),
    expiries: new Expiries(clock, context),
    context,
    traced: records(context),
    budget,
    keys: options.idempotency ?? new IdempotencyStore({
      ttlMillis: Duration.toMillis(config.idempotencyTtl),
      maxKeys: config.maxIdempotencyKeys
    }),
    retryAfterMillis: Duration.toMillis(config.mailboxRetryAfter),
    restartSchedule: Schedule.min([Schedule.exponential(config.restartBase), Schedule.spaced(config.restartMax)]),
    onKeys: (delta) => void (pendingKeys.value += delta),
    onBytes: budget === undefined ? undefined : (delta) => budget.add(delta),
    received: Metrics.tally(Metrics.opsReceived, context),
    activate: (sectorId) =>
      Effect.map(self.resilience.retrying(self.sink.load(sectorId)), (loaded) => new SectorActor(self, loaded))
  }
  return self
})

/**
 * Activates a sector: loads (claims) it and drains it when the current scope closes (bounded by `shutdownTimeout`).
 * A host activates its sectors through one `runtime` instead.
 */
export const make = Effect.fnUntraced(function*(
  sectorId: number,
  options: MakeOptions = {}
): Effect.fn.Return<Sector, SinkError, Scope.Scope | SectorSink | SectorsConfig | Resilience> {
  const shared = yield* runtime(options)
  const sector = yield* shared.activate(sectorId)
  yield* Effect.addFinalizer(() =>
    sector.drain.pipe(
      Effect.timeoutOption(shared.config.shutdownTimeout),
      Effect.andThen(sector.stop),
      Effect.tap((result) =>
        result.unflushed > 0
          ? Effect.logWarning(`sector ${sectorId}: stopped with ${result.unflushed} accepted ops not persisted`)
          : Effect.void
      )
    )
  )
  return sector
})

/**
 * The fibers of a sector with work to do, and what they share: the mailbox, the flusher's wake-up, and whether the
 * intake has ended. A sector has one while its mailbox or its backlog holds anything (or a drain or a restart is
 * under way) and until the grid point after that; an idle sector has none.
 */
class Run {
  readonly mailbox: Queue.Queue<Envelope, Cause.Done>
  readonly wake = Latch.makeUnsafe(false)
  fiber: Fiber.Fiber<void> | undefined = undefined
  intakeDone = false
  /**
   * While the flusher waits with nothing to do: when its timer wakes it — the grid point that ends its linger, at which
   * an op accepted before then is due too (`BatchPolicy.deadline`), so the op need not wake it — or `-Infinity` when no
   * timer is armed (the first op wakes it). `undefined` while it is busy.
   */
  idleUntil: number | undefined = undefined
  /** The intake died of this defect: the flusher dies of it too, and the supervisor restarts both. */
  intakeDefect: { readonly defect: unknown } | undefined = undefined
  constructor(mailbox: Queue.Queue<Envelope, Cause.Done>) {
    this.mailbox = mailbox
  }
}

/** The ops' sizes (`Batch.cellBytes`, with the `data` lengths the caller measured already, if any). */
const cellsOf = (ops: ReadonlyArray<Op.Op>, dataLengths?: DataLengths): Array<number> => {
  const cells = new Array<number>(ops.length)
  for (let i = 0; i < ops.length; i++) cells[i] = cellBytes(ops[i]!, dataLengths?.[i])
  return cells
}

/** The most bytes `ops` (of sizes `cells`) can add to the host's buffer budget. */
const budgetBytes = (ops: ReadonlyArray<Op.Op>, cells: ReadonlyArray<number>): number => {
  let bytes = 0
  for (let i = 0; i < ops.length; i++) bytes += opBytes(ops[i]!, cells[i])
  return bytes
}

/**
 * A sector: its state, seq, watermark and epoch, and its backlog — and fibers only while it has work. Written as a
 * class so that a resident sector costs its fields and nothing per closure: the methods live on the prototype.
 * Single-threaded: every change below happens without yielding in between.
 */
class SectorActor implements Sector {
  readonly sectorId: number
  private readonly rt: Runtime
  private epoch: number
  private state: SectorState.SectorState
  private current: Phase = "running"
  private readonly watermark: Watermark<ShuttingDown | SectorFenced>
  private readonly backlog: Backlog
  /** Keys of accepted submissions not yet durable, in seq order: each goes out with the batch of its last op. */
  private unstoredKeys: Array<IdempotencyRecord> = []
  private flushTarget = 0
  private needsResync = false
  /** Entries were dead-lettered: memory still shows their values until a reload after the next commit. */
  private reloadAfterCommit = false
  private readonly counters = {
    received: 0,
    persisted: 0,
    collapsed: 0,
    batches: 0,
    deadLetters: 0,
    restarts: 0,
    timerWakeups: 0
  }
  /** The fibers at work, if any. */
  private run: Run | undefined = undefined
  private drainStartedAt = 0
  /** Set by the first `stop`: its report, for every later caller. */
  private stopped: Deferred.Deferred<DrainReport> | undefined = undefined

  constructor(rt: Runtime, loaded: LoadedSector) {
    this.sectorId = loaded.sectorId
    this.rt = rt
    this.epoch = loaded.epoch
    this.state = SectorState.fromRows(loaded.rows)
    this.watermark = new Watermark(loaded.persistedSeq, loaded.persistedAt, rt.expiries)
    this.backlog = new Backlog({
      nextSeq: Math.max(loaded.persistedSeq, SectorState.maxSeq(this.state)) + 1,
      maxBatch: rt.config.policy.maxBatch,
      maxPendingKeys: rt.config.policy.maxPendingKeys,
      onKeys: rt.onKeys,
      onBytes: rt.onBytes
    })
    const idempotencyKeys = loaded.idempotencyKeys ?? []
    if (idempotencyKeys.length > 0) rt.keys.adopt(this.sectorId, idempotencyKeys, this.now())
    Metrics.activeSectors.modifyUnsafe(1, rt.context)
  }

  private now(): number {
    return this.rt.clock.currentTimeMillisUnsafe()
  }

  phase(): Phase {
    return this.current
  }

  unflushed(): number {
    return this.backlog.unflushed
  }

  // ---- submissions ----

  submit(ops: ReadonlyArray<Op.Op>, options?: SubmitOptions): Effect.Effect<Accepted, SubmitError> {
    return Effect.suspend((): Effect.Effect<Accepted, SubmitError> => {
      const sectorId = this.sectorId
      if (this.current === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
      if (this.current !== "running") return this.refuse(new ShuttingDown({ sectorId }))
      if (ops.length === 0) return Effect.fail(emptySubmission)
      const idempotency = options?.idempotency
      if (idempotency !== undefined) {
        if (idempotency.key.length === 0 || idempotency.key.length > 255) return Effect.fail(badKey)
        const known = this.rt.keys.find(sectorId, idempotency.key, this.now())
        if (known !== undefined) {
          if (known.fingerprint !== idempotency.fingerprint) {
            return Effect.fail(new IdempotencyMismatch({ sectorId, key: idempotency.key }))
          }
          return known._tag === "Accepted"
            ? this.answer(known.firstSeq, known.lastSeq, options, true)
            : Effect.flatMap(
              Deferred.await(known.seqs),
              ([firstSeq, lastSeq]) => this.answer(firstSeq, lastSeq, options, true)
            )
        }
      }
      if (!this.backlog.full) return this.enqueue(ops, options)
      // at maxPendingKeys: wait (bounded) for the flusher to take a batch, or refuse
      Metrics.pendingKeysLimitHits.updateUnsafe(1, this.rt.context)
      return this.room().pipe(
        Effect.timeoutOption(options?.mailboxWait ?? this.rt.config.mailboxWait),
        Effect.flatMap((): Effect.Effect<Accepted, SubmitError> => {
          if (this.current === "fenced") return Effect.fail(new SectorFenced({ sectorId }))
          if (this.current !== "running") return this.refuse(new ShuttingDown({ sectorId }))
          return this.backlog.full
            ? this.refuse(
              new BacklogFull({
                sectorId,
                maxPendingKeys: this.rt.config.policy.maxPendingKeys,
                retryAfterMillis: this.rt.retryAfterMillis
              })
            )
            : this.enqueue(ops, options)
        })
      )
    })
  }

  tryAccept(ops: ReadonlyArray<Op.Op>, dataLengths?: DataLengths): Exit.Exit<Accepted> | undefined {
    const run = this.run
    if (ops.length === 0 || this.backlog.full || run === undefined || !this.free(run)) return undefined
    // accepted here and now: nothing is reserved, the budget only has to have room for the most the ops can add
    const cells = cellsOf(ops, dataLengths)
    const budget = this.rt.budget
    if (budget !== undefined && !budget.fits(budgetBytes(ops, cells))) return undefined
    // free: the sector is running, so not fenced, and `accept` gives seqs
    const envelope: Envelope = { ops, cells, reserved: 0, deferred: undefined, pending: undefined }
    const exit = this.acceptHere(run, envelope)
    if (Exit.isFailure(exit)) return Exit.failCause(exit.cause)
    const [firstSeq, lastSeq] = exit.value!
    return Exit.succeed({
      sectorId: this.sectorId,
      accepted: ops.length,
      firstSeq,
      lastSeq,
      persisted: lastSeq <= this.watermark.seq
    })
  }

  tryAcceptDurable(
    ops: ReadonlyArray<Op.Op>,
    options: {
      readonly dataLengths?: DataLengths | undefined
      readonly timeout?: Duration.Input | undefined
      readonly onDurable: (exit: Exit.Exit<Accepted, DurableWaitError>) => void
    }
  ): Exit.Exit<() => void> | undefined {
    const accepted = this.tryAccept(ops, options.dataLengths)
    if (accepted === undefined) return undefined
    if (Exit.isFailure(accepted)) return Exit.failCause(accepted.cause)
    const { firstSeq, lastSeq } = accepted.value
    const durable = Exit.succeed<Accepted>({ ...accepted.value, persisted: true })
    const onDurable = options.onDurable
    if (lastSeq <= this.watermark.seq) {
      onDurable(durable)
      return Exit.succeed(noCancel)
    }
    // accepted, so running: the wait cannot be refused (`refuseWait`)
    return Exit.succeed(this.watermark.watch(
      lastSeq,
      (exit) => onDurable(Exit.isSuccess(exit) ? durable : Exit.failCause(exit.cause)),
      this.durableDeadline(firstSeq, lastSeq, options.timeout)
    ))
  }

  /** The deadline of a durable wait for `firstSeq..lastSeq` `timeout` from now, on the host's one timer for them. */
  private durableDeadline(
    firstSeq: number,
    lastSeq: number,
    timeout: Duration.Input | undefined
  ): Deadline<DurableTimeout> | undefined {
    if (timeout === undefined) return undefined
    const millis = Duration.toMillis(Duration.fromInputUnsafe(timeout))
    if (!Number.isFinite(millis)) return undefined
    const sectorId = this.sectorId
    return {
      at: this.now() + millis,
      timedOut: () => new DurableTimeout({ sectorId, firstSeq, lastSeq, persistedSeq: this.watermark.seq })
    }
  }

  /**
   * The ops' sizes (`Batch.cellBytes`) and the bytes reserved for them in the host's budget until the sector folds
   * them in; `undefined` when the budget cannot take them (nothing reserved).
   */
  private reserve(ops: ReadonlyArray<Op.Op>): { readonly cells: Array<number>; readonly reserved: number } | undefined {
    const cells = cellsOf(ops)
    const budget = this.rt.budget
    if (budget === undefined) return { cells, reserved: 0 }
    const bytes = budgetBytes(ops, cells)
    return budget.tryReserve(bytes) ? { cells, reserved: bytes } : undefined
  }

  /**
   * Waits until the backlog has room (or the sector stops running). Several submitters may wait: the first to run
   * after a batch was taken can fill it again, and the others wait on (within their own `mailboxWait`).
   */
  private room(): Effect.Effect<void> {
    return Effect.suspend(() =>
      this.backlog.full && this.current === "running"
        ? Effect.andThen(this.backlog.awaitSpace(), this.room())
        : Effect.void
    )
  }

  private refuse<E extends MailboxFull | BacklogFull | BufferFull | ShuttingDown>(error: E) {
    Metrics.refusedBy[error._tag].updateUnsafe(1, this.rt.context)
    return Effect.fail(error)
  }

  /** Why a durable wait cannot succeed any more, if it cannot. */
  private refuseWait(): ShuttingDown | SectorFenced | undefined {
    return this.current === "fenced"
      ? new SectorFenced({ sectorId: this.sectorId })
      : this.current === "stopped"
      ? new ShuttingDown({ sectorId: this.sectorId })
      : undefined
  }

  /** The answer to a submission with seqs `firstSeq..lastSeq`, once durable if `ack: "durable"` asks for it. */
  private answer(
    firstSeq: number,
    lastSeq: number,
    options: SubmitOptions | undefined,
    replayed: boolean
  ): Effect.Effect<Accepted, SubmitError> {
    const sectorId = this.sectorId
    const result = { sectorId, accepted: lastSeq - firstSeq + 1, firstSeq, lastSeq, ...(replayed ? { replayed } : {}) }
    if (options?.ack !== "durable") return Effect.succeed({ ...result, persisted: lastSeq <= this.watermark.seq })
    options.onAccepted?.(result)
    const durable = { ...result, persisted: true }
    const deadline = this.durableDeadline(firstSeq, lastSeq, options.durableTimeout)
    return Effect.as(this.watermark.await(lastSeq, () => this.refuseWait(), deadline), durable)
  }

  /**
   * Reserves the submission's bytes and puts it into the mailbox (waiting up to `mailboxWait` for room), waking the
   * sector if it is idle.
   */
  private enqueue(ops: ReadonlyArray<Op.Op>, options: SubmitOptions | undefined): Effect.Effect<Accepted, SubmitError> {
    const { budget, config, keys } = this.rt
    const sectorId = this.sectorId
    const sized = this.reserve(ops)
    if (sized === undefined) {
      return this.refuse(
        new BufferFull({
          sectorId,
          bufferedBytes: budget!.used,
          budgetBytes: budget!.max,
          retryAfterMillis: this.rt.retryAfterMillis
        })
      )
    }
    const { cells, reserved } = sized
    const deferred = Deferred.makeUnsafe<readonly [number, number], ShuttingDown | SectorFenced>()
    const key = options?.idempotency
    const pending = key === undefined
      ? undefined
      : keys.begin(
        sectorId,
        key.key,
        key.fingerprint,
        deferred,
        this.now(),
        key.ttl === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(key.ttl))
      )
    const giveBack = () => {
      budget?.add(-reserved)
      if (pending !== undefined) keys.forget(sectorId, pending.key, pending)
    }
    const envelope: Envelope = { ops, cells, reserved, deferred, pending }
    const accepted = Deferred.await(deferred).pipe(
      Effect.flatMap(([firstSeq, lastSeq]) => this.answer(firstSeq, lastSeq, options, false))
    )
    const deliver = (run: Run): Effect.Effect<Accepted, SubmitError> => {
      if (this.free(run)) return this.acceptNow(run, envelope, options)
      if (Queue.offerUnsafe(run.mailbox, envelope)) {
        Metrics.mailboxDepth.modifyUnsafe(1, this.rt.context)
        this.start(run)
        return accepted
      }
      const full = new MailboxFull({
        sectorId,
        capacity: config.mailboxCapacity,
        retryAfterMillis: this.rt.retryAfterMillis
      })
      if (options?.mailboxWait === undefined) {
        giveBack()
        return this.refuse(full)
      }
      return Queue.offer(run.mailbox, envelope).pipe(
        Effect.timeoutOption(options.mailboxWait),
        Effect.onInterrupt(() => Effect.sync(giveBack)),
        Effect.flatMap((offered): Effect.Effect<Accepted, SubmitError> => {
          if (Option.isNone(offered) || !offered.value) {
            giveBack()
            return this.refuse(Option.isNone(offered) ? full : new ShuttingDown({ sectorId }))
          }
          Metrics.mailboxDepth.modifyUnsafe(1, this.rt.context)
          return accepted
        })
      )
    }
    if (this.run !== undefined) return deliver(this.run)
    // idle: a mailbox for a new run (made without yielding, in practice; checked again in case it did)
    return Effect.flatMap(Queue.bounded<Envelope, Cause.Done>(config.mailboxCapacity), (mailbox) => {
      if (this.run !== undefined) return deliver(this.run)
      if (this.current !== "running") {
        giveBack()
        return this.current === "fenced"
          ? Effect.fail(new SectorFenced({ sectorId }))
          : this.refuse(new ShuttingDown({ sectorId }))
      }
      return deliver(this.run = new Run(mailbox))
    })
  }

  /**
   * Whether a submission can be accepted in its submitter's fiber, now: the sector is running, nothing waits in its
   * mailbox (so every submission before this one has its seqs: the intake takes a submission out of the mailbox only
   * in the same step that accepts it) and nothing is to be reloaded. Otherwise it goes through the mailbox, in order.
   */
  private free(run: Run): boolean {
    return this.current === "running" && !this.needsResync && run.intakeDefect === undefined && !run.intakeDone &&
      Queue.sizeUnsafe(run.mailbox) === 0
  }

  /**
   * Accepts a submission in the submitter's fiber (`free`): no hand-off to the intake, no scheduler hop. The run's
   * fibers are started for the flusher. An op the state cannot apply fails the submission as a defect, as in the
   * intake, and the flusher dies of it: the supervisor reloads the sector.
   */
  private acceptNow(run: Run, envelope: Envelope, options: SubmitOptions | undefined): Effect.Effect<Accepted, SubmitError> {
    const exit = this.acceptHere(run, envelope)
    if (Exit.isFailure(exit)) return Effect.failCause(exit.cause)
    const seqs = exit.value
    return seqs === undefined
      ? Effect.fail(new SectorFenced({ sectorId: this.sectorId }))
      : this.answer(seqs[0], seqs[1], options, false)
  }

  /**
   * `accept` in the submitter's fiber, starting the run's fibers for the flusher. An op the state cannot apply is a
   * defect of the submission, as in the intake, and the flusher's to die of: the supervisor reloads the sector.
   */
  private acceptHere(run: Run, envelope: Envelope): Exit.Exit<readonly [number, number] | undefined> {
    try {
      return Exit.succeed(this.accept(run, envelope, false))
    } catch (defect) {
      run.intakeDefect = { defect }
      run.wake.openUnsafe()
      return Exit.die(defect)
    } finally {
      this.start(run)
    }
  }

  // ---- the fibers ----

  /**
   * Starts the run's fibers if they are not running: the supervisor, which runs the intake and the flusher and
   * restarts them after a defect. They run with the host's services, not the caller's, and end when the sector has
   * nothing left to do.
   */
  private start(run: Run): void {
    if (run.fiber !== undefined) return
    run.fiber = Effect.runForkWith(this.rt.context)(
      this.incarnation(run).pipe(Effect.catch((restart) => this.restarting(run, restart)))
    )
  }

  /**
   * After a first failure, the incarnation again on the restart schedule, its first delay before the first restart
   * (the failure is handed to the schedule as its first input). Built only then: a run that never fails, the common
   * case, pays for no schedule.
   */
  private restarting(run: Run, first: Restart): Effect.Effect<void> {
    return retryAfter(first, this.incarnation(run), this.rt.restartSchedule).pipe(Effect.catch(() => Effect.void))
  }

  /** A log line annotated with the sector (only logging pays for the annotation, not every run). */
  private log(line: Effect.Effect<void>): Effect.Effect<void> {
    return Effect.annotateLogs(line, { sectorId: this.sectorId })
  }

  private incarnation(run: Run): Effect.Effect<void, Restart> {
    return Effect.suspend(() => {
      // the intake in a child fiber, the flusher in this one: a failure of either ends both (`intakeDefect`)
      const work = Effect.flatMap(
        Effect.forkChild(this.intake(run), { startImmediately: true }),
        (intake) =>
          this.flusher(run).pipe(
            Effect.onError(() => Fiber.interrupt(intake)),
            Effect.andThen(Fiber.join(intake))
          )
      )
      return this.needsResync
        ? this.resync().pipe(
          Effect.mapError((cause) => new Restart({ cause })),
          Effect.andThen(() => {
            this.needsResync = false
            return work
          })
        )
        : work
    }).pipe(
      Effect.catchDefect((defect) =>
        Effect.gen({ self: this }, function*() {
          this.counters.restarts++
          Metrics.restarts.updateUnsafe(1, this.rt.context)
          this.backlog.requeue(false)
          run.idleUntil = undefined
          this.needsResync = true
          run.intakeDefect = undefined
          yield* this.log(Effect.logError(`sector ${this.sectorId}: died of a defect, restarting`, defect))
          return yield* new Restart({ cause: defect })
        })
      ),
      Effect.tapError((restart) =>
        restart.cause instanceof SinkError
          ? this.log(Effect.logWarning(`sector ${this.sectorId}: cannot reload (${restart.cause.message}), retrying`))
          : Effect.void
      )
    )
  }

  /**
   * An envelope leaves the mailbox (or is taken without it): its reservation goes back (folded in, the backlog
   * counts what it holds).
   */
  private leave(envelope: Envelope, fromMailbox: boolean): void {
    if (fromMailbox) Metrics.mailboxDepth.modifyUnsafe(-1, this.rt.context)
    this.rt.budget?.add(-envelope.reserved)
  }

  /** A submission leaves without seqs: it fails, and its key (if any) is forgotten so that a retry applies it. */
  private reject(envelope: Envelope, error: ShuttingDown | SectorFenced): void {
    if (envelope.pending !== undefined) this.rt.keys.forget(this.sectorId, envelope.pending.key, envelope.pending)
    if (envelope.deferred !== undefined) Deferred.doneUnsafe(envelope.deferred, Exit.fail(error))
  }

  /** Accepted keys whose ops will not become durable here (fenced, stopped): forgotten, so a retry applies them. */
  private forgetUnstoredKeys(): void {
    for (const record of this.unstoredKeys) this.rt.keys.forget(this.sectorId, record.key, record)
    this.unstoredKeys = []
  }

  /** Gives a submission its seqs and applies it; its seqs, or undefined when the sector was fenced meanwhile. */
  private accept(run: Run, envelope: Envelope, fromMailbox: boolean): readonly [number, number] | undefined {
    this.leave(envelope, fromMailbox)
    if (this.current === "fenced") {
      this.reject(envelope, new SectorFenced({ sectorId: this.sectorId }))
      return undefined
    }
    const backlog = this.backlog
    const now = this.now()
    let firstSeq: number
    try {
      firstSeq = backlog.accept(envelope.ops, now, SectorState.apply, this.state, envelope.cells)
    } catch (defect) {
      if (envelope.deferred !== undefined) Deferred.doneUnsafe(envelope.deferred, Exit.die(defect))
      throw defect
    }
    const count = envelope.ops.length
    const lastSeq = backlog.nextSeq - 1
    this.counters.received += count
    this.rt.received.value += count
    if (envelope.pending !== undefined) {
      this.unstoredKeys.push(this.rt.keys.accept(envelope.pending, firstSeq, lastSeq, now))
    }
    const seqs = [firstSeq, lastSeq] as const
    if (envelope.deferred !== undefined) Deferred.doneUnsafe(envelope.deferred, Exit.succeed(seqs))
    const policy = this.rt.config.policy
    if (
      backlog.ops >= policy.minBatch || backlog.full ||
      // an idle flusher is woken for the first op, unless its timer falls when that op is due anyway
      (run.idleUntil !== undefined && BatchPolicy.deadline(policy, now) > run.idleUntil)
    ) run.wake.openUnsafe()
    return seqs
  }

  /**
   * Takes submissions the sector could not take at once (`free`). It waits for one without taking it (`peek`), then
   * takes and accepts every one waiting in one step: a submission stays in the mailbox until it has its seqs, so a
   * submitter that finds the mailbox empty knows that none is ahead of it.
   */
  private intake(run: Run): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      while (Exit.isSuccess(yield* Effect.exit(Queue.peek(run.mailbox)))) {
        while (true) {
          // a submission accepted in its submitter's fiber died applying: the flusher dies of it, nothing more here
          if (run.intakeDefect !== undefined) return
          const next = Queue.takeUnsafe(run.mailbox)
          if (next === undefined || Exit.isFailure(next)) break
          this.accept(run, next.value, true)
        }
      }
      run.intakeDone = true
      run.wake.openUnsafe()
    }).pipe(
      // a defect here (an op the state cannot apply) is the flusher's to die of: it wakes and finds it
      Effect.catchDefect((defect) =>
        Effect.sync(() => {
          run.intakeDefect = { defect }
          run.wake.openUnsafe()
        })
      )
    )
  }

  /**
   * Whether the run can end: the sector is running (not draining) and holds nothing — an empty mailbox, nothing
   * pending, nothing in flight, nothing to reload. Then it ends its mailbox (the intake stops) and forgets the run;
   * the next submission starts another.
   */
  private retire(run: Run): boolean {
    if (
      this.current !== "running" || this.run !== run || this.needsResync ||
      Queue.sizeUnsafe(run.mailbox) > 0 || this.backlog.ops > 0 || this.backlog.inFlight !== undefined
    ) return false
    this.run = undefined
    Queue.endUnsafe(run.mailbox)
    return true
  }

  /** The flusher woke from a wait (`Metrics.flusherWakeups`). */
  private wokeUp(): void {
    Metrics.flusherWakeups.updateUnsafe(1, this.rt.context)
  }

  /** The flusher woke because its timer fired (a batch's deadline, or the end of an idle run's wait). */
  private timerWakeup(): void {
    this.counters.timerWakeups++
    Metrics.timerWakeups.updateUnsafe(1, this.rt.context)
  }

  private flusher(run: Run): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      const policy = this.rt.config.policy
      /** Idle since the last batch: the run ends at this grid point unless work comes first (`undefined`: busy). */
      let lingerUntil: number | undefined
      while (this.current !== "fenced") {
        if (run.intakeDefect !== undefined) return yield* Effect.die(run.intakeDefect.defect)
        run.wake.closeUnsafe()
        const first = this.backlog.first
        const requested = this.current === "draining"
          ? "shutdown"
          : first !== undefined && this.flushTarget >= first.fromSeq
          ? "manual"
          : undefined
        const decision = BatchPolicy.decide(policy, {
          ops: this.backlog.ops,
          oldestAt: first?.firstAt ?? 0,
          now: this.now(),
          requested,
          full: this.backlog.full
        })
        switch (decision._tag) {
          case "Idle": {
            if (run.intakeDone) return
            // the run ends at the next grid point if no work comes first: a sector written to steadily keeps its
            // fibers and mailbox from batch to batch instead of making them anew for each one
            const now = this.now()
            lingerUntil ??= BatchPolicy.deadline(policy, now)
            const lingering = now < lingerUntil
            if (lingering) yield* this.rt.deadlines.wake(lingerUntil, run.wake)
            else if (this.retire(run)) return
            run.idleUntil = lingering ? lingerUntil : -Infinity
            yield* run.wake.await
            this.wokeUp()
            run.idleUntil = undefined
            if (lingering && this.now() >= lingerUntil) this.timerWakeup()
            break
          }
          case "Wait": {
            lingerUntil = undefined
            // the batch's deadline, on the host's timer for it: shared with every sector due at the same grid point,
            // which opens the same latch a trigger opens (one wait, not a race of two fibers per batch)
            const at = BatchPolicy.deadline(policy, first!.firstAt)
            yield* this.rt.deadlines.wake(at, run.wake)
            yield* run.wake.await
            this.wokeUp()
            if (this.now() >= at) this.timerWakeup()
            break
          }
          case "Flush": {
            lingerUntil = undefined
            yield* this.flushOnce(run, decision.trigger)
            break
          }
          default:
            absurd(decision)
        }
      }
    })
  }

  /** Reloads the durable state (a new claim) and lays every buffered, not yet durable change over it. */
  private resync(): Effect.Effect<void, SinkError> {
    return Effect.map(this.rt.resilience.retrying(this.rt.sink.load(this.sectorId)), (fresh) => {
      const backlog = this.backlog
      this.epoch = fresh.epoch
      this.rt.keys.adopt(this.sectorId, fresh.idempotencyKeys ?? [], this.now())
      const next = SectorState.fromRows(fresh.rows)
      backlog.dropThrough(fresh.persistedSeq)
      for (const entries of backlog.entries()) SectorState.applyEntries(next, entries)
      this.state = next
      this.watermark.advance(fresh.persistedSeq, fresh.persistedAt)
      backlog.nextSeq = Math.max(backlog.nextSeq, this.watermark.seq + 1, SectorState.maxSeq(this.state) + 1)
    })
  }

  /** A rejected batch: dead-letter every poison entry once, drop it from the buffer, then persist the rest. */
  private deadLetterPoison(batch: Batch, rejection: SinkError): Effect.Effect<number, SinkError | SinkUnavailable> {
    return Effect.gen({ self: this }, function*() {
      const { resilience, sink } = this.rt
      const sectorId = this.sectorId
      const { poison, rest } = yield* Isolation.isolate(
        `batch ${batch.fromSeq}..${batch.toSeq}`,
        batch.entries,
        rejection,
        (entries) => resilience.retrying(sink.verify(withEntries(batch, entries)))
      )
      const at = this.now()
      const letters: Array<DeadLetter> = poison.map(({ entry, error }) => ({
        sectorId,
        seq: entry.seq,
        entry,
        error: error.message,
        code: error.code,
        at
      }))
      yield* this.log(Effect.logWarning(`sector ${sectorId}: dead-lettering ${letters.length} rejected entries`)).pipe(
        Effect.annotateLogs({
          seqs: letters.map((letter) => letter.seq).join(","),
          error: poison[poison.length - 1]!.error.message
        })
      )
      yield* resilience.retrying(sink.deadLetter(letters))
      // recorded: the entries never go out again, even if the persist below fails and the segment is retried
      for (const { entry } of poison) this.backlog.discard(entry)
      this.counters.deadLetters += letters.length
      Metrics.deadLetters.updateUnsafe(letters.length, this.rt.context)
      this.reloadAfterCommit = true
      yield* resilience.guard(sink.persist(withEntries(batch, rest)))
      return letters.length
    })
  }

  private persist(batch: Batch): Effect.Effect<number, SinkError | SinkUnavailable> {
    const persisted = this.rt.resilience.guard(this.rt.sink.persist(batch)).pipe(
      Effect.as(0),
      Effect.catchIf(Isolation.isRejected, (error) => this.deadLetterPoison(batch, error))
    )
    if (!this.rt.traced) return persisted
    return persisted.pipe(
      withOutcome,
      Effect.withSpan("Sector.persist", {
        attributes: {
          "sector.id": this.sectorId,
          "batch.ops": batch.ops,
          "batch.rows": batch.entries.length,
          "batch.trigger": batch.trigger,
          "batch.collapse_ratio": collapseRatio(batch)
        }
      }, { captureStackTrace: false }) // the span is the batch's, not a call site's: no `Error` a batch to capture
    )
  }

  private becomeFenced(run: Run): Effect.Effect<void> {
    const lost = this.backlog.clear()
    Metrics.opsLostBy.fenced.updateUnsafe(lost, this.rt.context)
    this.forgetUnstoredKeys()
    this.current = "fenced"
    this.watermark.failAll(new SectorFenced({ sectorId: this.sectorId }))
    Queue.endUnsafe(run.mailbox)
    return this.log(Effect.logError(
      `sector ${this.sectorId}: claimed by another owner; ${lost} accepted ops were not persisted`
    ))
  }

  /** How many of the unstored keys (a prefix: they are in seq order) a batch up to `toSeq` makes durable. */
  private keysThrough(toSeq: number): number {
    const keys = this.unstoredKeys
    let count = 0
    while (count < keys.length && keys[count]!.lastSeq <= toSeq) count++
    return count
  }

  /** The batch with the keys of the submissions whose last op it makes durable. */
  private withKeys(batch: Batch, at: number): Batch {
    const count = this.keysThrough(batch.toSeq)
    return count === 0 ? batch : {
      ...batch,
      idempotencyKeys: this.unstoredKeys.slice(0, count),
      forgetKeysExpiredBy: at
    }
  }

  private flushOnce(run: Run, trigger: BatchPolicy.Trigger): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      const { config, context } = this.rt
      const backlog = this.backlog
      Metrics.pendingKeysUtilisation.updateUnsafe(backlog.keys / config.policy.maxPendingKeys, context)
      const segment = backlog.take()
      const startedAt = this.now()
      const batch = this.withKeys(segment.toBatch(this.sectorId, this.epoch, trigger), startedAt)
      Metrics.flushTriggersBy[trigger].updateUnsafe(1, context)
      Metrics.accumulationSeconds.updateUnsafe((startedAt - segment.firstAt) / 1000, context)
      const outcome = yield* Effect.exit(this.persist(batch))
      if (Exit.isSuccess(outcome)) {
        backlog.commit()
        this.unstoredKeys.splice(0, this.keysThrough(batch.toSeq))
        const persistedAt = this.now()
        const rows = batch.entries.length - outcome.value
        const counters = this.counters
        counters.persisted += batch.ops
        counters.collapsed += batch.ops - rows
        counters.batches++
        Metrics.persistSeconds.updateUnsafe((persistedAt - startedAt) / 1000, context)
        Metrics.durableSeconds.updateUnsafe((persistedAt - segment.firstAt) / 1000, context)
        Metrics.opsPersisted.updateUnsafe(batch.ops, context)
        Metrics.opsCollapsed.updateUnsafe(batch.ops - rows, context)
        Metrics.batches.updateUnsafe(1, context)
        Metrics.batchOps.updateUnsafe(batch.ops, context)
        Metrics.batchRows.updateUnsafe(rows, context)
        this.watermark.advance(batch.toSeq, persistedAt)
        // dead letters: memory still shows the rejected values; reload the truth
        if (this.reloadAfterCommit) {
          yield* this.resync().pipe(Effect.orDie)
          this.reloadAfterCommit = false
        }
        return
      }
      const error = Cause.findErrorOption(outcome.cause)
      if (Option.isNone(error)) return yield* Effect.failCause(outcome.cause as Cause.Cause<never>) // a defect or an interruption
      const failure = error.value
      if (failure._tag === "SinkError" && failure.reason === "Fenced") {
        Metrics.persistFailuresBy.Fenced.updateUnsafe(1, context)
        return yield* this.becomeFenced(run)
      }
      Metrics.persistFailuresBy[failure._tag === "SinkUnavailable" ? "Unavailable" : failure.reason].updateUnsafe(1, context)
      backlog.requeue(true)
      const delay = failure._tag === "SinkUnavailable"
        ? Math.max(failure.retryAfterMillis, Duration.toMillis(config.retryBase))
        : Duration.toMillis(config.retryBase)
      if (failure._tag === "SinkError") {
        yield* this.log(
          Effect.logWarning(`sector ${this.sectorId}: persist failed (${failure.reason}): ${failure.message}`)
        )
      }
      yield* Effect.sleep(delay)
    })
  }

  // ---- lifecycle ----

  private beginDrain(): void {
    if (this.current !== "running") return
    this.current = "draining"
    this.drainStartedAt = this.counters.persisted
    const run = this.run
    if (run === undefined) return
    Queue.endUnsafe(run.mailbox)
    run.wake.openUnsafe()
  }

  /** Drains (the mailbox, then a last flush), then stops; after `stop`, just its report. */
  get drain(): Effect.Effect<DrainReport> {
    return Effect.suspend(() => {
      this.beginDrain()
      const fiber = this.run?.fiber
      return fiber === undefined ? this.stop : Effect.andThen(Fiber.await(fiber), this.stop)
    })
  }

  /** Stops the sector at once: once, however many callers (the host's shutdown, passivation) race to it. */
  get stop(): Effect.Effect<DrainReport> {
    return Effect.suspend(() => {
      if (this.stopped !== undefined) return Deferred.await(this.stopped)
      const stopped = Deferred.makeUnsafe<DrainReport>()
      this.stopped = stopped
      return Effect.uninterruptible(Effect.gen({ self: this }, function*() {
        this.beginDrain()
        const run = this.run
        if (run?.fiber !== undefined) yield* Fiber.interrupt(run.fiber)
        const refused = run === undefined
          ? []
          : yield* Queue.clear(run.mailbox).pipe(Effect.orElseSucceed(() => [] as Array<Envelope>))
        for (const envelope of refused) {
          this.leave(envelope, true)
          this.reject(envelope, new ShuttingDown({ sectorId: this.sectorId }))
        }
        this.run = undefined
        const left = this.backlog.unflushed
        this.forgetUnstoredKeys()
        if (this.current !== "fenced") {
          this.current = "stopped"
          this.watermark.failAll(new ShuttingDown({ sectorId: this.sectorId }))
        }
        this.backlog.detach()
        Metrics.activeSectors.modifyUnsafe(-1, this.rt.context)
        const report = { sectorId: this.sectorId, flushed: this.counters.persisted - this.drainStartedAt, unflushed: left }
        Deferred.doneUnsafe(stopped, Exit.succeed(report))
        return report
      }))
    })
  }

  /** Waits until everything accepted so far is durable, flushing at once; returns the watermark. */
  get flush(): Effect.Effect<number, ShuttingDown | SectorFenced> {
    return Effect.suspend((): Effect.Effect<number, ShuttingDown | SectorFenced> => {
      if (this.current === "fenced") return Effect.fail(new SectorFenced({ sectorId: this.sectorId }))
      const target = this.backlog.nextSeq - 1
      if (target <= this.watermark.seq) return Effect.succeed(this.watermark.seq)
      if (this.current === "running" && target > this.flushTarget) {
        this.flushTarget = target
        // ops not yet durable are held by a run (a run ends only with nothing pending or in flight): wake its flusher
        this.run?.wake.openUnsafe()
      }
      return this.watermark.await(target, () => this.refuseWait()).pipe(Effect.as(target))
    })
  }

  get(entity: number): Effect.Effect<Option.Option<SectorState.EntityView>> {
    return Effect.sync(() => Option.fromUndefinedOr(SectorState.view(this.state, entity)))
  }

  get stats(): Effect.Effect<SectorStats> {
    return Effect.sync((): SectorStats => {
      const backlog = this.backlog
      return {
        sectorId: this.sectorId,
        phase: this.current,
        epoch: this.epoch,
        mailboxDepth: this.run === undefined ? 0 : Queue.sizeUnsafe(this.run.mailbox),
        mailboxCapacity: this.rt.config.mailboxCapacity,
        pendingOps: backlog.ops,
        pendingKeys: backlog.keys,
        maxPendingKeys: this.rt.config.policy.maxPendingKeys,
        oldestPendingMillis: backlog.first === undefined ? 0 : this.now() - backlog.first.firstAt,
        inFlightOps: backlog.inFlight?.ops ?? 0,
        lastSeq: backlog.nextSeq - 1,
        persistedSeq: this.watermark.seq,
        persistedAt: this.watermark.at,
        entities: SectorState.size(this.state),
        awake: this.run !== undefined,
        counters: { ...this.counters }
      }
    })
  }
}
