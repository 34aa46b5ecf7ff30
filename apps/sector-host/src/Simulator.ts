/**
 * `--simulate <scenario>`: the host drives itself with one of the field report's workloads (`@sectors/workloads`)
 * until it is told to stop, and logs one summary line per second: ops/s accepted and persisted, batches/s, mean
 * batch, collapse %, commits/s, and p99 op→durable latency (sampled with durable acks).
 */
import { SinkPg } from "@sectors/sink-pg"
import { Driver, Summary, Workload } from "@sectors/workloads"
import { Effect } from "effect"

/** One summary line. */
export const line = (s: Driver.Second): string => {
  const mean = s.batches === 0 ? 0 : s.persisted / s.batches
  const collapse = s.persisted === 0 ? 0 : (s.collapsed / s.persisted) * 100
  const latency = Summary.percentile(s.durableMillis, 99)
  return `t=${String(s.second).padStart(4)}s  in ${String(s.accepted).padStart(6)}/s` +
    `${s.refused > 0 ? ` (refused ${s.refused})` : ""}${s.unfinished > 0 ? ` (unfinished ${s.unfinished})` : ""}` +
    `  persisted ${String(s.persisted).padStart(6)}/s` +
    `  batches ${String(s.batches).padStart(5)}/s  mean batch ${mean.toFixed(1).padStart(6)}` +
    `  collapse ${collapse.toFixed(0).padStart(3)}%  commits ${String(s.commits).padStart(4)}/s` +
    `  p99 op→durable ${Number.isNaN(latency) ? "   -" : latency.toFixed(0).padStart(4)} ms`
}

/** Drives the host with `scenario` until interrupted, logging one summary line per second. */
export const run = (scenario: Workload.Scenario) =>
  Effect.logInfo(`simulating the ${scenario} workload`).pipe(
    Effect.andThen(Driver.drive(Workload.fieldReport[scenario], {
      commits: SinkPg.transactions,
      onSecond: (second) => Effect.logInfo(line(second))
    }))
  )
