/** Shared set-up for core tests: a host on the memory sink with fault injection, on the TestClock. */
import { Duration, Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { BatchPolicy, type Op, SectorHost, SectorsConfig } from "../src/index.ts"
import { FaultSink, MemorySink } from "../src/testing.ts"

export const policy = (options: Partial<{ minBatch: number; maxBatch: number; maxWait: number; maxPendingKeys: number }> = {}) =>
  BatchPolicy.BatchPolicy.make({
    minBatch: options.minBatch ?? 5,
    maxBatch: options.maxBatch ?? 10,
    maxWait: Duration.millis(options.maxWait ?? 25),
    maxPendingKeys: options.maxPendingKeys ?? 1000
  })

/** Host + memory sink + faults with fast retries; `config` overrides. */
export const hostLayer = (config: Partial<SectorsConfig.SectorsConfig["Service"]> = {}) =>
  SectorHost.layer.pipe(
    Layer.provideMerge(FaultSink.layer(MemorySink.layer)),
    Layer.provideMerge(MemorySink.layer),
    Layer.provideMerge(SectorsConfig.layer({
      policy: policy(),
      passivateAfter: Duration.infinity,
      retryBase: Duration.millis(10),
      retryMaxDelay: Duration.millis(100),
      retryDeadline: Duration.millis(300),
      circuitFailures: 2,
      circuitOpenBase: Duration.seconds(1),
      circuitOpenMax: Duration.seconds(4),
      ...config
    }))
  )

export const set = (entity: number, component = "c", x = 0): Op.Op => ({
  type: "set",
  entity,
  component,
  data: { x }
})

/** Advances the TestClock in small steps (letting fibers run between them). */
export const advance = (millis: number, step = 1) =>
  Effect.gen(function*() {
    for (let elapsed = 0; elapsed < millis; elapsed += step) {
      yield* TestClock.adjust(Math.min(step, millis - elapsed))
      yield* Effect.yieldNow
    }
  })
