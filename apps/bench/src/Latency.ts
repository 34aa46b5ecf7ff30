/**
 * Issue 17 item 5: p99 op→durable at 2,000 ops/s (balanced) against maxWait + 2 × the median persist time. The
 * sustained workload at 2,000 ops/s is offered in a few runs, each on a fresh host and database, one submission in 5
 * acking durable and timed (four times the capacity steps' sample; a durable ack changes no batch, but every waiter
 * is one more fiber to wake when its batch commits, so timing every op would add to what it measures). A run's first second is reported apart: it runs on a cold database and cold code,
 * whose first commits take tens of milliseconds, and would otherwise decide a p99 about steady state.
 */
import { BatchPolicy } from "@sectors/core"
import { Summary, Workload } from "@sectors/workloads"
import { Duration, Effect, type Redacted } from "effect"
import * as Run from "./Run.ts"

/** What to run. */
export interface Plan {
  readonly rate: number
  readonly runs: number
  readonly seconds: number
}

/** The quick run's plan: 3 runs of 10 s. */
export const quick: Plan = { rate: 2_000, runs: 3, seconds: 10 }

/** The full run's plan: 5 runs of 30 s. */
export const full: Plan = { rate: 2_000, runs: 5, seconds: 30 }

/** One run's figures (ms). */
export interface RunFigures {
  /** Every sample of the run. */
  readonly all: Summary.Summary
  /** Without the run's first second. */
  readonly warm: Summary.Summary
  /** Median `sink.persist` call of the run (waiting for a group writer included). */
  readonly persistP50: number
  readonly load: string
}

/** What the suite measured. */
export interface Result {
  readonly rate: number
  readonly seconds: number
  readonly maxWaitMillis: number
  readonly runs: ReadonlyArray<RunFigures>
  /** Every run's samples after its first second, pooled. */
  readonly warm: Summary.Summary
  /** Every run's samples, pooled. */
  readonly all: Summary.Summary
  /** The median of the runs' median persist times. */
  readonly persistP50: number
}

const loadavg = () =>
  Effect.promise(() => import("node:fs/promises").then((fs) => fs.readFile("/proc/loadavg", "utf8"))).pipe(
    Effect.map((text) => text.split(" ").slice(0, 3).join(" ")),
    Effect.orElseSucceed(() => "?")
  )

/** Runs `plan` on fresh databases of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, plan: Plan) =>
  Effect.gen(function*() {
    const runs: Array<RunFigures> = []
    const warm: Array<number> = []
    const all: Array<number> = []
    for (let i = 0; i < plan.runs; i++) {
      const load = yield* loadavg()
      const result = yield* Run.run(serverUrl, {
        label: `latency ${plan.rate}/s`,
        profile: "balanced",
        seconds: plan.seconds,
        workload: { ...Workload.fieldReport.sustained, rate: () => plan.rate },
        durableSample: 5
      })
      const runWarm = result.perSecond.slice(1).flatMap((s) => s.durableMillis)
      const runAll = result.perSecond.flatMap((s) => s.durableMillis)
      warm.push(...runWarm)
      all.push(...runAll)
      runs.push({
        all: Summary.summarize(runAll),
        warm: Summary.summarize(runWarm),
        persistP50: result.commitMillis.p50,
        load
      })
    }
    return {
      rate: plan.rate,
      seconds: plan.seconds,
      maxWaitMillis: Duration.toMillis(BatchPolicy.profiles.balanced.maxWait),
      runs,
      warm: Summary.summarize(warm),
      all: Summary.summarize(all),
      persistP50: Summary.percentile(runs.map((r) => r.persistP50), 50)
    } satisfies Result
  })
