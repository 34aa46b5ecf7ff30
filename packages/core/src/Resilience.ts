/**
 * How sectors survive a failing database. Every persist is retried while the sink says `Transient`, with
 * exponential, jittered delays capped at `retryMaxDelay` and bounded by `retryDeadline` in total (a `Schedule`);
 * the retried call runs inside effect's `CircuitBreaker` (one circuit for the sink): `circuitFailures`
 * consecutive failed persists open it for `circuitOpenBase`, doubling on each consecutive opening up to
 * `circuitOpenMax`, and a single probe is let through half-open. A `Rejected` or `Fenced` answer means the
 * database is up, so it counts as a success for the circuit. While the circuit is closed and the last persist
 * succeeded, a persist runs beside the breaker and only what changes its count is recorded in it (`guard`).
 *
 * The circuit governs persist attempts only, never admission: while it is open, sectors keep accepting (bounded by
 * the host's buffer budget and each sector's `maxPendingKeys`) and a sector's persist waits out the open time.
 * `health` says whether the sink answers: down from the first failed persist attempt, up again at the first
 * success (also the `sectors_sink_up` gauge). While the probe runs
 * (half-open), the other sectors' persists wait for it to settle — the circuit closing or opening again — rather
 * than polling: with every sector retrying each `retryBase`, a 30 s outage cost thousands of refused attempts.
 * One `Resilience` is shared by all sectors of a host.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import { CircuitBreaker } from "effect/persistence"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { type SinkError, SinkUnavailable } from "./Errors.ts"
import * as Metrics from "./Metrics.ts"
import { SectorsConfig } from "./SectorsConfig.ts"
import { retryAfter } from "./internal/retry.ts"

/** The circuit as callers see it. */
export type CircuitStatus =
  | { readonly _tag: "Closed" }
  | { readonly _tag: "HalfOpen" }
  | { readonly _tag: "Open"; readonly until: number; readonly consecutiveOpenings: number }

/** Whether the sink answers persists. */
export interface SinkHealth {
  readonly up: boolean
  /** When persists began to fail (ms since the epoch); undefined while up. */
  readonly downSince: number | undefined
}

export class Resilience extends Context.Service<Resilience, {
  /** Runs a persist with retries inside the circuit breaker. An open circuit fails with `SinkUnavailable`. */
  readonly guard: <A>(persist: Effect.Effect<A, SinkError>) => Effect.Effect<A, SinkError | SinkUnavailable>
  /** Runs a sink call with retries but outside the circuit (loads, trial runs, dead letters). */
  readonly retrying: <A>(call: Effect.Effect<A, SinkError>) => Effect.Effect<A, SinkError>
  /** Whether the sink answers persists, and since when it has not (ms). Synchronous. */
  readonly health: () => SinkHealth
  /** The circuit now. */
  readonly status: () => CircuitStatus
}>()("@sectors/core/Resilience") {}

const circuitKey = "sink"

/** An open circuit, or a failing breaker store, as `SinkUnavailable` (a half-open circuit is `awaitProbe`'s). */
const toUnavailable = (error: CircuitBreaker.CircuitBreakerError, retryBase: Duration.Duration) =>
  error.reason._tag === "CircuitOpen"
    ? new SinkUnavailable({ retryAfterMillis: Duration.toMillis(error.reason.retryAfter), reason: "circuit open" })
    : new SinkUnavailable({ retryAfterMillis: Duration.toMillis(retryBase), reason: error.reason.message })

/** Builds the shared retry policy and circuit breaker from `SectorsConfig`. */
export const make = Effect.gen(function*() {
  const config = yield* SectorsConfig
  const context = yield* Effect.context<never>()
  const breaker = yield* CircuitBreaker.make({
    tripPolicy: CircuitBreaker.consecutive(config.circuitFailures),
    openDuration: Schedule.min([Schedule.exponential(config.circuitOpenBase), Schedule.spaced(config.circuitOpenMax)]),
    maxOpenDuration: config.circuitOpenMax
  }).pipe(Effect.provide(CircuitBreaker.layerStoreMemory()))

  let status: CircuitStatus = { _tag: "Closed" }
  /** Closed while the half-open probe runs; opened when the circuit closes or opens again. */
  const probeSettled = Latch.makeUnsafe(true)
  const clock = yield* Clock.Clock
  yield* breaker.transitions.pipe(
    Stream.runForEach((transition) =>
      Effect.sync(() => {
        switch (transition.to) {
          case "Open":
            status = {
              _tag: "Open",
              until: clock.currentTimeMillisUnsafe() + Duration.toMillis(transition.retryAfter),
              consecutiveOpenings: transition.consecutiveOpenings
            }
            Metrics.circuitState.updateUnsafe(2, context)
            probeSettled.openUnsafe()
            break
          case "HalfOpen":
            status = { _tag: "HalfOpen" }
            Metrics.circuitState.updateUnsafe(1, context)
            probeSettled.closeUnsafe()
            break
          case "Closed":
            status = { _tag: "Closed" }
            Metrics.circuitState.updateUnsafe(0, context)
            probeSettled.openUnsafe()
            break
        }
      })
    ),
    Effect.forkScoped({ startImmediately: true })
  )
  Metrics.circuitState.updateUnsafe(0, context)

  const schedule = Schedule.exponential(config.retryBase).pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, config.retryMaxDelay))),
    Schedule.jittered,
    Schedule.upTo({ duration: config.retryDeadline }),
    Schedule.tap(() => Metric.update(Metrics.retries, 1))
  )

  const isRetryable = (error: SinkError) => error.isRetryable
  /**
   * `call`, retried on the schedule while it fails retryably; the schedule starts only on a first retryable failure
   * (`retryAfter`): a call that succeeds, the common case, pays for none (~2.6 µs a persist).
   */
  const retrying = <A>(call: Effect.Effect<A, SinkError>): Effect.Effect<A, SinkError> =>
    Effect.catchIf(call, isRetryable, (first) => retryAfter(first, call, schedule, isRetryable))

  let health: SinkHealth = { up: true, downSince: undefined }
  Metrics.sinkUp.updateUnsafe(1, context)
  const markUp = () => {
    if (health.up) return
    health = { up: true, downSince: undefined }
    Metrics.sinkUp.updateUnsafe(1, context)
  }
  const markDown = () => {
    if (!health.up) return
    health = { up: false, downSince: clock.currentTimeMillisUnsafe() }
    Metrics.sinkUp.updateUnsafe(0, context)
  }

  const outcomeOf = <A>(exit: Exit.Exit<A, SinkError>): CircuitBreaker.Outcome => {
    const error = Exit.isSuccess(exit) ? Option.none() : Cause.findErrorOption(exit.cause)
    if (Exit.isSuccess(exit) || (Option.isSome(error) && (error.value.reason === "Rejected" || error.value.reason === "Fenced"))) {
      markUp()
      return CircuitBreaker.success
    }
    markDown()
    return CircuitBreaker.failure()
  }

  /**
   * While another persist probes the half-open circuit: waits until the probe settles (at most `retryMaxDelay`, in
   * case a transition is missed), then fails so that the caller tries again (after `retryBase`) against the settled circuit.
   */
  const awaitProbe = probeSettled.await.pipe(
    Effect.timeoutOption(config.retryMaxDelay),
    Effect.andThen(Effect.fail(new SinkUnavailable({ retryAfterMillis: 0, reason: "circuit half-open" })))
  )

  const throughBreaker = <A>(persist: Effect.Effect<A, SinkError>): Effect.Effect<A, SinkError | SinkUnavailable> =>
    breaker.execute(retrying(persist), { key: circuitKey, classify: outcomeOf<A> }).pipe(
      Effect.catchTag("CircuitBreakerError", (error) =>
        error.reason._tag === "CircuitHalfOpen" ? awaitProbe : Effect.fail(toUnavailable(error, config.retryBase)))
    )

  /** Records `outcome` in the breaker as a call of its own would (an admission refused meanwhile records nothing). */
  const record = (outcome: Exit.Exit<unknown, SinkError>) =>
    Effect.ignore(breaker.execute(outcome, { key: circuitKey, classify: outcomeOf }))

  /**
   * The common case without the breaker's bookkeeping (its scope, admission and record cost ~10 µs a batch): while
   * the circuit is closed and the last outcome was a success, the breaker's count of consecutive failures is zero,
   * and one more success changes nothing in it. So the persist runs outside it; what the breaker must learn is
   * recorded afterwards as a call of its own — a failure, and a success that follows another persist's failure
   * (which resets the count, as it would have). Anything else (open, half-open, after a failure) goes through the
   * breaker as before.
   */
  const guard = <A>(persist: Effect.Effect<A, SinkError>): Effect.Effect<A, SinkError | SinkUnavailable> =>
    Effect.suspend(() => {
      if (status._tag !== "Closed" || !health.up) return throughBreaker(persist)
      // as in the breaker: the persist may be interrupted, and its interruption is an outcome like any other
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.exit(restore(retrying(persist))), (exit) => {
          const afterFailure = !health.up
          const outcome = outcomeOf(exit)
          return outcome._tag === "Success" && !afterFailure ? exit : Effect.andThen(record(exit), exit)
        })
      )
    })

  return Resilience.of({ guard, retrying, health: () => health, status: () => status })
})

/** The shared `Resilience`, configured by `SectorsConfig`. */
export const layer: Layer.Layer<Resilience, never, SectorsConfig> = Layer.effect(Resilience, make)
