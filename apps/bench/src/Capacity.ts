/**
 * The highest offered rate a profile sustains: the workload is offered at rising rates (doubling), each for a few
 * seconds on a fresh host and database; a rate is sustained when at least 95 % of the target rate is accepted
 * (the producer runs in the same process: a producer that cannot keep up is a saturated process), at least 95 %
 * of what was accepted is persisted within the step, and the p99 op→durable latency stays under 2 s.
 * The search doubles until the first rate that is not sustained, then narrows the bracket by `refine` geometric
 * bisection steps (each halves the bracket's ratio in log scale: 2× → 1.41× → 1.19×).
 */
import type { BatchPolicy } from "@sectors/core"
import type { Workload } from "@sectors/workloads"
import { Effect, type Redacted } from "effect"
import * as Run from "./Run.ts"

/** One step of the search. */
export interface Step {
  readonly rate: number
  readonly sustained: boolean
  readonly result: Run.Result
}

/** The search's answer. */
export interface Capacity {
  readonly profile: BatchPolicy.ProfileName
  /** The highest rate sustained (0 if none). */
  readonly maxSustained: number
  readonly steps: ReadonlyArray<Step>
}

/**
 * The lowest rate tried that was not sustained: the limit lies between it and `maxSustained` (undefined if every
 * rate was sustained). Derived from the steps, so results written before the bisection render the same.
 */
export const notSustainedAt = (capacity: Capacity): number | undefined => {
  const failed = capacity.steps.filter((s) => !s.sustained).map((s) => s.rate)
  return failed.length === 0 ? undefined : Math.min(...failed)
}

/**
 * The highest rate `step` sustains: `rates` in order until one is not sustained, then `refine` geometric bisection
 * steps between the last sustained rate and the first that was not (rounded to hundreds).
 */
export const highestSustained = <E, R>(
  options: { readonly rates: ReadonlyArray<number>; readonly refine: number },
  step: (rate: number) => Effect.Effect<boolean, E, R>
): Effect.Effect<number, E, R> =>
  Effect.gen(function*() {
    let maxSustained = 0
    let failedAt: number | undefined
    for (const rate of options.rates) {
      if (!(yield* step(rate))) {
        failedAt = rate
        break
      }
      maxSustained = rate
    }
    for (let i = 0; i < options.refine && failedAt !== undefined && maxSustained > 0; i++) {
      const rate = Math.round(Math.sqrt(maxSustained * failedAt) / 100) * 100
      if (rate <= maxSustained || rate >= failedAt) break
      if (yield* step(rate)) maxSustained = rate
      else failedAt = rate
    }
    return maxSustained
  })

/** Whether a step kept up with `rate`. */
const sustained = (result: Run.Result, rate: number): boolean =>
  result.accepted >= 0.95 * rate * result.seconds &&
  result.persisted >= 0.95 * result.accepted &&
  (Number.isNaN(result.latencyMillis.p99) || result.latencyMillis.p99 < 2_000)

/** Searches the highest sustained rate of `workload` (its own rate is ignored) for `profile`. */
export const search = (
  serverUrl: Redacted.Redacted<string>,
  options: {
    readonly profile: BatchPolicy.ProfileName
    readonly workload: Workload.Workload
    readonly rates: ReadonlyArray<number>
    readonly seconds: number
    /** Bisection steps once a rate failed. */
    readonly refine: number
  }
) =>
  Effect.gen(function*() {
    const steps: Array<Step> = []
    const step = Effect.fnUntraced(function*(rate: number) {
      const result = yield* Run.run(serverUrl, {
        label: `capacity ${rate}/s`,
        profile: options.profile,
        seconds: options.seconds,
        workload: { ...options.workload, rate: () => rate }
      })
      const ok = sustained(result, rate)
      steps.push({ rate, sustained: ok, result })
      yield* Effect.logInfo(
        `${options.profile} at ${rate} ops/s: ${ok ? "sustained" : "not sustained"} ` +
          `(accepted ${Math.round(result.accepted / result.seconds)}/s, persisted ${Math.round(result.persisted / result.seconds)}/s, ` +
          `p99 ${Math.round(result.latencyMillis.p99)} ms)`
      )
      return ok
    })
    const maxSustained = yield* highestSustained(options, step)
    return { profile: options.profile, maxSustained, steps } satisfies Capacity
  })
