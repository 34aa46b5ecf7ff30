/**
 * Offering a workload to a `SectorHost` and reporting what happened, second by second: the loop behind the host's
 * `--simulate` and the benchmarks' in-process runs.
 *
 * Every 10 ms tick draws what the workload's rate asks for since the previous tick and submits it, one submission
 * per sector, without waiting for the answers: each submission runs in a `FiberSet`, one in `durableSample` with a
 * durable ack to time op→durable. Once a second the run reports ops offered, accepted and refused, and the growth
 * of the host's counters (persisted, batches, collapsed, commits). A submission is counted in the second it was
 * offered, when it is answered before that second's report.
 *
 * When the run stops — its `duration` is over, or it is interrupted — the submissions still under way get up to
 * `settle` to finish before the set interrupts the rest. A run that ends by itself then reports its last part,
 * with the ops of the submissions that did not finish in time as `unfinished`; an interrupted run reports nothing
 * more. Time is the `Clock` (the `TestClock` under `it.effect`), draws the `OpSource` under `Random.withSeed(seed)`.
 */
import { Metrics, type Op, SectorHost } from "@sectors/core"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import * as Random from "effect/Random"
import * as OpSource from "./OpSource.ts"
import type { Workload } from "./Workload.ts"

/** What one second of a run looked like (the last report of a run covers what was left, usually less). */
export interface Second {
  /** Seconds since the start when this report was made (a whole number except in the last report). */
  readonly second: number
  /** Ops drawn and submitted. */
  readonly offered: number
  /** Ops of this second's submissions accepted by the host (answered before this report). */
  readonly accepted: number
  /** Ops of this second's submissions the host refused (answered before this report). */
  readonly refused: number
  /** Ops of submissions still unanswered when the run had stopped and `settle` ran out; only the last report has any. */
  readonly unfinished: number
  /** Growth of `Metrics.opsPersisted`. */
  readonly persisted: number
  /** Growth of `Metrics.batches`. */
  readonly batches: number
  /** Growth of `Metrics.opsCollapsed`. */
  readonly collapsed: number
  /** Growth of the `commits` counter given to the run (0 without one). */
  readonly commits: number
  /** Sampled op→durable latencies (ms) of this second's durable submissions. */
  readonly durableMillis: ReadonlyArray<number>
}

/** How a run goes. Every field is optional. */
export interface Options {
  /** How long to offer the workload. Defaults to forever (until interrupted). */
  readonly duration?: Duration.Input | undefined
  /** Hears every report, once a second and at the end. */
  readonly onSecond?: ((second: Second) => Effect.Effect<void>) | undefined
  /** One submission in this many asks for a durable ack (and is timed). Defaults to 20. */
  readonly durableSample?: number | undefined
  /** Seed of the op source: the same seed draws the same ops. Defaults to 1. */
  readonly seed?: number | undefined
  /** The sink's commit counter (e.g. `SinkPg.transactions`), reported as `commits`. */
  readonly commits?: Metric.Counter<number> | undefined
  /** How long submissions under way may still take once the run stops. Defaults to 5 seconds. */
  readonly settle?: Duration.Input | undefined
  /** Hears every submission as it is offered (ms since the start). */
  readonly onSubmit?: ((sectorId: number, ops: ReadonlyArray<Op.Op>, atMillis: number) => void) | undefined
}

/** Time between two draws. */
const tickMillis = 10

const count = (metric: Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

/** Offers `workload` to the host for `options.duration` (forever if omitted), reporting once a second. */
export const drive = (workload: Workload, options: Options = {}): Effect.Effect<void, never, SectorHost.SectorHost> =>
  Effect.gen(function*() {
    const host = yield* SectorHost.SectorHost
    const clock = yield* Clock.Clock
    const source = yield* OpSource.make(workload).pipe(Random.withSeed(options.seed ?? 1))
    const sample = options.durableSample ?? 20
    const end = options.duration === undefined
      ? Number.POSITIVE_INFINITY
      : Duration.toMillis(Duration.fromInputUnsafe(options.duration))
    const settle = options.settle ?? Duration.seconds(5)
    const totals = Effect.all({
      persisted: count(Metrics.opsPersisted),
      batches: count(Metrics.batches),
      collapsed: count(Metrics.opsCollapsed),
      commits: options.commits === undefined ? Effect.succeed(0) : count(options.commits)
    })

    const origin = clock.monotonicTimeNanosUnsafe()
    /** Milliseconds since the start. */
    const elapsed = () => Number(clock.monotonicTimeNanosUnsafe() - origin) / 1_000_000

    const inFlight = yield* FiberSet.make<void, never>()
    const opsOf = new WeakMap<Fiber.Fiber<void>, number>()
    const settled = Effect.asVoid(Effect.timeoutOption(FiberSet.awaitEmpty(inFlight), settle))
    // an interrupted run lets its submissions finish too (a run that ended by itself has settled already): this
    // finalizer runs before the set's own, which interrupts what is left
    yield* Effect.addFinalizer((exit) => Exit.isSuccess(exit) ? Effect.void : settled)

    let carry = 0
    let submissions = 0
    let current = { offered: 0, accepted: 0, refused: 0, durableMillis: [] as Array<number> }
    let second = 0
    let last = yield* totals

    /** Reports what happened since the last report, as of `at` seconds. */
    const emit = (at: number, unfinished: number) =>
      Effect.gen(function*() {
        const now = yield* totals
        const report: Second = {
          second: at,
          offered: current.offered,
          accepted: current.accepted,
          refused: current.refused,
          unfinished,
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

    let previous = elapsed()
    while (elapsed() < end) {
      const now = elapsed()
      // what the rate asks for since the last tick, however long the tick really was
      carry += workload.rate(now / 1000) * (now - previous) / 1000
      previous = now
      const drawn = Math.floor(carry)
      carry -= drawn
      const bySector = new Map<number, Array<Op.Op>>()
      for (let i = 0; i < drawn; i++) {
        const sector = source.sector()
        const list = bySector.get(sector)
        if (list === undefined) bySector.set(sector, [source.op()])
        else list.push(source.op())
      }
      current.offered += drawn
      for (const [sectorId, ops] of bySector) {
        const durable = ++submissions % sample === 0
        const submittedAt = elapsed()
        options.onSubmit?.(sectorId, ops, submittedAt)
        const tally = current
        const fiber = yield* FiberSet.run(
          inFlight,
          host.submit(sectorId, ops, durable ? { ack: "durable" } : undefined).pipe(
            Effect.matchEffect({
              onSuccess: () =>
                Effect.sync(() => {
                  tally.accepted += ops.length
                  if (durable) tally.durableMillis.push(elapsed() - submittedAt)
                }),
              onFailure: () => Effect.sync(() => void (tally.refused += ops.length))
            })
          )
        )
        opsOf.set(fiber, ops.length)
      }
      const nextSecond = Math.floor(elapsed() / 1000)
      if (nextSecond > second) yield* emit(nextSecond, 0)
      yield* Effect.sleep(Duration.millis(tickMillis - (elapsed() % tickMillis)))
    }
    // the submissions still under way belong to the run: wait for them (bounded), then report the last part
    yield* settled
    let unfinished = 0
    for (const fiber of inFlight) unfinished += opsOf.get(fiber) ?? 0
    yield* emit(elapsed() / 1000, unfinished)
  }).pipe(Effect.scoped)
