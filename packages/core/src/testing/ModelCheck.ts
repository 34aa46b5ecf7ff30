/**
 * A model checker for batching configurations: drive a real `SectorHost` over the memory sink (optionally with
 * injected faults) through an arrival timeline on the `TestClock`, shut it down, and check the outcome against the
 * reference model. `run` needs a `TestClock` (inside `it.effect`); `check` and `runOnTestClock` bring their own, for
 * use under fast-check:
 *
 * ```ts
 * it("my configuration keeps every guarantee", () =>
 *   fc.assert(fc.asyncProperty(Arbitraries.timeline(), async (arrivals) => {
 *     const problems = await Effect.runPromise(ModelCheck.check({ policy, arrivals }))
 *     assert.deepStrictEqual(problems, [])
 *   })))
 * ```
 *
 * `violations` lists every broken guarantee in words: seqs not gap-free, durable rows different from the fold of
 * the accepted ops, a batch empty or over `maxBatch`, a pending op that waited longer than `maxWait` (plus the
 * allowed persist time), an entry applied twice, or a shutdown report that does not match what is durable.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import { TestClock } from "effect/testing"
import type { BatchPolicy } from "../BatchPolicy.ts"
import * as Metrics from "../Metrics.ts"
import type * as Op from "../Op.ts"
import * as SectorHost from "../SectorHost.ts"
import type { MemoryStore } from "../SectorSink.ts"
import * as SectorsConfig from "../SectorsConfig.ts"
import * as SectorState from "../SectorState.ts"
import type { Arrival } from "./Arbitraries.ts"
import * as FaultSink from "./FaultSink.ts"
import * as MemorySink from "./MemorySink.ts"
import * as TestHost from "./TestHost.ts"

/** A fault to inject once the timeline reaches `at` ms. */
export interface ScheduledFault {
  readonly at: number
  readonly inject: (faults: FaultSink.Faults["Service"]) => Effect.Effect<void>
}

/** What to run. */
export interface Scenario {
  readonly policy: BatchPolicy
  readonly arrivals: ReadonlyArray<Arrival>
  readonly faults?: ReadonlyArray<ScheduledFault> | undefined
  /**
   * Extra milliseconds a pending op may wait beyond `maxWait` before its batch commits: the persist in flight when
   * it became due plus its own batch's persist. Defaults to 0 (the memory sink takes no time).
   */
  readonly allowanceMillis?: number | undefined
  /** Check the wait bound (meaningless while the sink fails). Defaults to true when there are no faults. */
  readonly checkWaits?: boolean | undefined
  /**
   * Whether the final shutdown may leave accepted ops unflushed (a database down until the end). Defaults to false:
   * every accepted op must be durable when the run ends, so a host that never persists cannot pass.
   */
  readonly allowUnflushed?: boolean | undefined
  /**
   * Whether submissions may be refused (mailbox full, circuit open). Defaults to true when there are faults and
   * false otherwise: a clean run must accept everything it is given.
   */
  readonly allowRefusals?: boolean | undefined
  /** Further configuration (mailbox capacity, retries, shutdown timeout…). */
  readonly config?: Partial<SectorsConfig.SectorsConfig["Service"]> | undefined
}

/** A submission the host accepted. */
export interface AcceptedArrival {
  readonly sectorId: number
  readonly ops: ReadonlyArray<Op.Op>
  readonly firstSeq: number
  readonly lastSeq: number
  /** Clock time it was accepted (its ops became pending). */
  readonly at: number
}

/** What happened. */
export interface Outcome {
  readonly accepted: ReadonlyArray<AcceptedArrival>
  /** Submissions refused (mailbox full, circuit open), by error tag. */
  readonly refused: ReadonlyArray<{ readonly sectorId: number; readonly reason: string }>
  readonly report: SectorHost.ShutdownReport
  readonly store: MemoryStore
  /** Sector restarts over the whole run, its shutdown included. */
  readonly restarts: number
}

const settle = (done: () => boolean, step: number, maxSteps: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < maxSteps && !done(); i++) {
      yield* TestClock.adjust(step)
      yield* Effect.yieldNow
    }
  })

/** Runs `scenario` on a fresh host and memory sink; needs the `TestClock` (run it inside `it.effect`). */
export const run = (scenario: Scenario): Effect.Effect<Outcome> =>
  Effect.provideService(Metric.MetricRegistry, new Map())(Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      TestHost.layer({
        policy: scenario.policy,
        retryBase: Duration.millis(5),
        retryMaxDelay: Duration.millis(50),
        retryDeadline: Duration.millis(200),
        circuitFailures: SectorsConfig.defaults.circuitFailures, // not TestHost's 2
        circuitOpenBase: Duration.millis(100),
        circuitOpenMax: Duration.seconds(1),
        shutdownTimeout: Duration.seconds(30),
        ...scenario.config
      }),
      scope
    )
    const host = Context.get(context, SectorHost.SectorHost)
    const faults = Context.get(context, FaultSink.Faults)
    const store = Context.get(context, MemorySink.MemorySink)

    const accepted: Array<AcceptedArrival> = []
    const refused: Array<{ sectorId: number; reason: string }> = []
    const pendingFaults = [...(scenario.faults ?? [])].sort((a, b) => a.at - b.at)
    let elapsed = 0
    let running = 0
    for (const arrival of scenario.arrivals) {
      if (arrival.delay > 0) {
        yield* TestClock.adjust(arrival.delay)
        elapsed += arrival.delay
      }
      while (pendingFaults.length > 0 && pendingFaults[0]!.at <= elapsed) yield* pendingFaults.shift()!.inject(faults)
      running++
      yield* host.submit(arrival.sectorId, arrival.ops).pipe(
        Effect.flatMap((result) =>
          Effect.map(TestClock.testClockWith((clock) => clock.currentTimeMillis), (at) =>
            void accepted.push({ sectorId: arrival.sectorId, ops: arrival.ops, firstSeq: result.firstSeq, lastSeq: result.lastSeq, at }))
        ),
        Effect.catch((error) => Effect.sync(() => void refused.push({ sectorId: arrival.sectorId, reason: error._tag }))),
        Effect.ensuring(Effect.sync(() => void running--)),
        Effect.forkIn(scope, { startImmediately: true })
      )
    }
    for (const fault of pendingFaults) yield* fault.inject(faults)
    yield* settle(() => running === 0, 5, 20_000)

    let report: SectorHost.ShutdownReport | undefined
    const shutdown = yield* host.shutdown.pipe(
      Effect.tap((r) => Effect.sync(() => void (report = r))),
      Effect.forkIn(scope, { startImmediately: true })
    )
    yield* settle(() => report !== undefined, 10, 20_000)
    yield* Fiber.await(shutdown)
    yield* Scope.close(scope, Exit.void)
    // from the host's counter, so that a restart during the shutdown's flush counts too
    const restarts = (yield* Metric.value(Metrics.restarts)).count
    return { accepted, refused, report: report!, store, restarts }
  }))

/**
 * Runs `scenario` on its own `TestClock` (no logging) and returns its violations: one call per generated case in a
 * fast-check property.
 */
export const check = (scenario: Scenario): Effect.Effect<ReadonlyArray<string>> =>
  Effect.map(runOnTestClock(scenario), (outcome) => violations(scenario, outcome))

/** `run` on a `TestClock` of its own with logging off: for use outside `it.effect` (e.g. in `Effect.runPromise`). */
export const runOnTestClock = (scenario: Scenario): Effect.Effect<Outcome> =>
  run(scenario).pipe(Effect.provide(Layer.merge(TestClock.layer(), Logger.layer([]))))

/** Every broken guarantee of `outcome`, in words; empty when all hold. */
export const violations = (scenario: Scenario, outcome: Outcome): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const policy = scenario.policy
  const bySector = new Map<number, Array<AcceptedArrival>>()
  for (const a of outcome.accepted) {
    const list = bySector.get(a.sectorId) ?? []
    list.push(a)
    bySector.set(a.sectorId, list)
  }

  let acceptedOps = 0
  let durableOps = 0
  for (const [sectorId, list] of bySector) {
    list.sort((a, b) => a.firstSeq - b.firstSeq)
    let expected = 1
    for (const a of list) {
      if (a.firstSeq !== expected || a.lastSeq - a.firstSeq + 1 !== a.ops.length) {
        problems.push(`sector ${sectorId}: seqs ${a.firstSeq}..${a.lastSeq} for ${a.ops.length} ops, expected from ${expected}`)
      }
      expected = a.lastSeq + 1
      acceptedOps += a.ops.length
    }
    const persisted = outcome.store.sector(sectorId)?.persistedSeq ?? 0
    durableOps += persisted
    const durable = list.flatMap((a) => a.ops.filter((_, i) => a.firstSeq + i <= persisted))
    const expectedRows = SectorState.toRows(SectorState.fold(durable))
    const actualRows = outcome.store.rows(sectorId)
    if (JSON.stringify(expectedRows) !== JSON.stringify(actualRows)) {
      problems.push(`sector ${sectorId}: durable rows differ from the fold of the ${durable.length} durable ops`)
    }
  }

  if (acceptedOps - durableOps !== outcome.report.unflushed) {
    problems.push(
      `shutdown reported ${outcome.report.unflushed} unflushed ops, but ${acceptedOps - durableOps} accepted ops are not durable`
    )
  }
  if (!(scenario.allowUnflushed ?? false) && acceptedOps !== durableOps) {
    problems.push(`${acceptedOps - durableOps} of ${acceptedOps} accepted ops are not durable after the shutdown`)
  }
  const hasFaults = scenario.faults !== undefined && scenario.faults.length > 0
  if (!(scenario.allowRefusals ?? hasFaults) && outcome.refused.length > 0) {
    const reasons = [...new Set(outcome.refused.map((r) => r.reason))].join(", ")
    problems.push(`${outcome.refused.length} submissions refused (${reasons}) in a run that must accept all`)
  }

  const arrivalOf = new Map<string, number>()
  for (const a of outcome.accepted) {
    for (let seq = a.firstSeq; seq <= a.lastSeq; seq++) arrivalOf.set(`${a.sectorId}:${seq}`, a.at)
  }
  const checkWaits = scenario.checkWaits ?? !hasFaults
  const bound = Duration.toMillis(policy.maxWait) + (scenario.allowanceMillis ?? 0)
  for (const commit of outcome.store.commits) {
    if (commit.ops < 1) problems.push(`sector ${commit.sectorId}: empty batch ${commit.fromSeq}..${commit.toSeq}`)
    if (commit.ops > policy.maxBatch) {
      problems.push(`sector ${commit.sectorId}: batch of ${commit.ops} ops over maxBatch ${policy.maxBatch}`)
    }
    if (!checkWaits) continue
    let oldest = Number.POSITIVE_INFINITY
    for (let seq = commit.fromSeq; seq <= commit.toSeq; seq++) {
      oldest = Math.min(oldest, arrivalOf.get(`${commit.sectorId}:${seq}`) ?? oldest)
    }
    if (commit.at - oldest > bound) {
      problems.push(
        `sector ${commit.sectorId}: an op of batch ${commit.fromSeq}..${commit.toSeq} waited ${commit.at - oldest} ms (bound ${bound} ms)`
      )
    }
  }

  for (const twice of outcome.store.appliedTwice()) problems.push(`applied twice: ${twice}`)
  return problems
}
