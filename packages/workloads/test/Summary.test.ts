import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Summary } from "../src/index.ts"

describe("Summary", () => {
  it("uses nearest-rank percentiles", () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i) // 100 … 1, unsorted
    const summary = Summary.summarize(samples)
    assert.deepStrictEqual(summary, { count: 100, mean: 50.5, min: 1, max: 100, p50: 50, p95: 95, p99: 99 })
  })

  it("is all NaN for no samples", () => {
    const { count, ...figures } = Summary.summarize([])
    assert.strictEqual(count, 0)
    for (const value of Object.values(figures)) assert.isTrue(Number.isNaN(value))
  })

  it("orders min ≤ p50 ≤ p95 ≤ p99 ≤ max, each percentile the smallest sample with p % at or below it", () => {
    // long enough that p95 and p99 are not simply the maximum; small integers for ties
    const sample = fc.oneof(fc.double({ noNaN: true, min: -1e9, max: 1e9 }), fc.integer({ min: -3, max: 3 }))
    fc.assert(fc.property(fc.array(sample, { minLength: 1, maxLength: 300 }), (samples) => {
      const s = Summary.summarize(samples)
      assert.isTrue(s.min <= s.p50 && s.p50 <= s.p95 && s.p95 <= s.p99 && s.p99 <= s.max)
      for (const v of [s.min, s.p50, s.p95, s.p99, s.max]) assert.include(samples, v)
      for (const [p, value] of [[50, s.p50], [95, s.p95], [99, s.p99]] as const) {
        assert.isAtLeast(samples.filter((x) => x <= value).length / samples.length, p / 100)
        assert.isBelow(samples.filter((x) => x < value).length / samples.length, p / 100)
      }
    }))
  })

  it("takes the percentile of samples in any order, by the same definition as summarize", () => {
    assert.strictEqual(Summary.percentile([3, 1, 2], 50), 2)
    assert.strictEqual(Summary.percentile([5], 99), 5)
    assert.strictEqual(Summary.percentile([1, 2, 3, 4], 25), 1)
    assert.strictEqual(Summary.percentile([1, 2, 3, 4], 26), 2)
    assert.isTrue(Number.isNaN(Summary.percentile([], 99)))
    fc.assert(fc.property(fc.array(fc.double({ noNaN: true }), { minLength: 1, maxLength: 200 }), (samples) => {
      const s = Summary.summarize(samples)
      assert.deepStrictEqual([50, 95, 99].map((p) => Summary.percentile(samples, p)), [s.p50, s.p95, s.p99])
    }))
  })

  it("leaves the samples it is given as they were", () => {
    const samples = [3, 1, 2]
    Summary.summarize(samples)
    Summary.percentile(samples, 50)
    assert.deepStrictEqual(samples, [3, 1, 2])
  })
})
