/** Shared set-up for core tests: a host on the memory sink with fault injection, on the TestClock. */
import { Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import { BatchPolicy, type Op, type SectorsConfig } from "../src/index.ts"
import { TestHost } from "../src/testing.ts"

export const policy = (options: Partial<{ minBatch: number; maxBatch: number; maxWait: number; maxPendingKeys: number }> = {}) =>
  BatchPolicy.BatchPolicy.make({
    minBatch: options.minBatch ?? 5,
    maxBatch: options.maxBatch ?? 10,
    maxWait: Duration.millis(options.maxWait ?? 25),
    maxPendingKeys: options.maxPendingKeys ?? 1000
  })

/** `TestHost.layer` (host + memory sink + faults, fast retries) with `policy()`; `config` overrides. */
export const hostLayer = (config: Partial<SectorsConfig.SectorsConfig["Service"]> = {}) =>
  TestHost.layer({ policy: policy(), ...config })

export const set = (entity: number, component = "c", x = 0): Op.Op => ({
  type: "set",
  entity,
  component,
  data: { x }
})

/**
 * A `set` whose entity cannot be read: ops are trusted past `Op.decodeOps`, and this one dies as the sector applies it
 * (a defect of the sector, which restarts).
 */
export const unreadable = (component = "c"): Op.Op => ({
  type: "set",
  component,
  data: { x: 9 },
  get entity(): number {
    throw new Error("unreadable entity")
  }
}) as Op.Op

/** Advances the TestClock in small steps (letting fibers run between them). */
export const advance = (millis: number, step = 1) =>
  Effect.gen(function*() {
    for (let elapsed = 0; elapsed < millis; elapsed += step) {
      yield* TestClock.adjust(Math.min(step, millis - elapsed))
      yield* Effect.yieldNow
    }
  })
