import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Summary from "../src/Summary.ts"

describe("Summary", () => {
  it("uses nearest-rank percentiles", () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i) // 100 … 1, unsorted
    const summary = Summary.summarize(samples)
    assert.deepStrictEqual(summary, { count: 100, mean: 50.5, min: 1, max: 100, p50: 50, p95: 95, p99: 99 })
  })

  it("is all NaN for no samples", () => {
    const summary = Summary.summarize([])
    assert.strictEqual(summary.count, 0)
    assert.isTrue(Number.isNaN(summary.p99) && Number.isNaN(summary.mean))
  })

  it("orders min ≤ p50 ≤ p95 ≤ p99 ≤ max, all of them samples", () =>
    fc.assert(fc.property(fc.array(fc.double({ noNaN: true, min: -1e9, max: 1e9 }), { minLength: 1 }), (samples) => {
      const s = Summary.summarize(samples)
      assert.isTrue(s.min <= s.p50 && s.p50 <= s.p95 && s.p95 <= s.p99 && s.p99 <= s.max)
      for (const v of [s.min, s.p50, s.p95, s.p99, s.max]) assert.include(samples, v)
      const atOrBelow = samples.filter((x) => x <= s.p95).length
      assert.isAtLeast(atOrBelow / samples.length, 0.95)
    })))
})
