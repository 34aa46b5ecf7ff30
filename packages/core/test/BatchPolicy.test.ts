import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Result, Schema } from "effect"
import * as fc from "fast-check"
import { BatchPolicy } from "../src/index.ts"

const policyArb = fc
  .record({
    minBatch: fc.integer({ min: 1, max: 500 }),
    extra: fc.integer({ min: 0, max: 2000 }),
    maxWaitMs: fc.integer({ min: 0, max: 1000 }),
    maxPendingKeys: fc.integer({ min: 1, max: 100_000 })
  })
  .map(({ extra, maxPendingKeys, maxWaitMs, minBatch }) =>
    BatchPolicy.BatchPolicy.make({
      minBatch,
      maxBatch: minBatch + extra,
      maxWait: Duration.millis(maxWaitMs),
      maxPendingKeys
    })
  )

const pendingArb = fc.record({
  ops: fc.integer({ min: 0, max: 5000 }),
  oldestAt: fc.integer({ min: 0, max: 1_000_000 }),
  waited: fc.integer({ min: 0, max: 5000 })
})

describe("BatchPolicy.decide", () => {
  it("is Idle exactly when nothing is pending, so a batch is never empty", () =>
    fc.assert(fc.property(policyArb, pendingArb, (policy, p) => {
      const decision = BatchPolicy.decide(policy, { ops: p.ops, oldestAt: p.oldestAt, now: p.oldestAt + p.waited })
      assert.strictEqual(decision._tag === "Idle", p.ops === 0)
    })))

  it("flushes as soon as minBatch ops are pending, for max_batch once maxBatch are", () =>
    fc.assert(fc.property(policyArb, pendingArb, (policy, p) => {
      const decision = BatchPolicy.decide(policy, { ops: p.ops, oldestAt: p.oldestAt, now: p.oldestAt + p.waited })
      if (p.ops >= policy.maxBatch) assert.deepStrictEqual(decision, { _tag: "Flush", trigger: "max_batch" })
      else if (p.ops >= policy.minBatch) assert.deepStrictEqual(decision, { _tag: "Flush", trigger: "min_batch" })
    })))

  it("never lets the oldest pending op wait longer than maxWait", () =>
    fc.assert(fc.property(policyArb, pendingArb, (policy, p) => {
      const now = p.oldestAt + p.waited
      const decision = BatchPolicy.decide(policy, { ops: p.ops, oldestAt: p.oldestAt, now })
      const maxWait = Duration.toMillis(policy.maxWait)
      if (decision._tag === "Wait") {
        assert.isAbove(decision.millis, 0)
        assert.isAtMost(p.waited + decision.millis, maxWait)
        assert.strictEqual((now + decision.millis) % maxWait, 0, "deadlines sit on the maxWait grid")
        const later = BatchPolicy.decide(policy, { ops: p.ops, oldestAt: p.oldestAt, now: now + decision.millis })
        assert.deepStrictEqual(later, { _tag: "Flush", trigger: "max_wait" })
      }
      if (p.ops > 0 && p.waited >= maxWait) assert.strictEqual(decision._tag, "Flush")
    })))

  it("honours a requested flush at once, whatever is pending", () =>
    fc.assert(fc.property(
      policyArb,
      pendingArb,
      fc.constantFrom("shutdown" as const, "manual" as const),
      (policy, p, requested) => {
        const decision = BatchPolicy.decide(policy, { ops: p.ops, oldestAt: p.oldestAt, now: p.oldestAt, requested })
        if (p.ops === 0) assert.strictEqual(decision._tag, "Idle")
        else assert.deepStrictEqual(decision, { _tag: "Flush", trigger: p.ops >= policy.maxBatch ? "max_batch" : requested })
      }
    )))

  it("flushes a full sector (at maxPendingKeys) at once as max_batch: its batch can grow no more", () =>
    fc.assert(fc.property(policyArb, pendingArb, fc.integer({ min: 0, max: 10_000 }), (policy, p, waited) => {
      const decision = BatchPolicy.decide(policy, { ops: p.ops, oldestAt: p.oldestAt, now: p.oldestAt + waited, full: true })
      assert.deepStrictEqual(decision, p.ops === 0 ? { _tag: "Idle" } : { _tag: "Flush", trigger: "max_batch" })
    })))
})

describe("BatchPolicy profiles", () => {
  it("are the field report's table", () => {
    const table = Object.fromEntries(
      BatchPolicy.profileNames.map((name) => {
        const p = BatchPolicy.profiles[name]
        return [name, [p.minBatch, Duration.toMillis(p.maxWait), p.maxBatch]]
      })
    )
    assert.deepStrictEqual(table, {
      aggressive: [100, 50, 2000],
      balanced: [50, 25, 1000],
      conservative: [20, 10, 500],
      immediate: [1, 0, 1000]
    })
    assert.strictEqual(BatchPolicy.defaultPolicy, BatchPolicy.profiles.balanced)
  })

  it("immediate persists every op the moment it arrives (the old tight loop)", () => {
    const decision = BatchPolicy.decide(BatchPolicy.profiles.immediate, { ops: 1, oldestAt: 5, now: 5 })
    assert.deepStrictEqual(decision, { _tag: "Flush", trigger: "min_batch" })
  })
})

describe("BatchPolicy schema", () => {
  it.effect("rejects maxBatch below minBatch and names the field", () =>
    Effect.gen(function*() {
      const result = Schema.decodeUnknownResult(BatchPolicy.BatchPolicy)({
        minBatch: 100,
        maxBatch: 10,
        maxWait: Duration.millis(5),
        maxPendingKeys: 10
      })
      assert.isTrue(Result.isFailure(result))
      if (Result.isFailure(result)) {
        assert.include(result.failure.message, "maxBatch (10) must be at least minBatch (100)")
        assert.include(result.failure.message, "maxBatch")
      }
    }))

  it.effect("rejects a zero minBatch", () =>
    Effect.gen(function*() {
      const result = Schema.decodeUnknownResult(BatchPolicy.BatchPolicy)({
        minBatch: 0,
        maxBatch: 10,
        maxWait: Duration.millis(5),
        maxPendingKeys: 10
      })
      assert.isTrue(Result.isFailure(result))
    }))
})
