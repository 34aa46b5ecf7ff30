/**
 * Summary statistics for benchmark samples (latencies, batch sizes): count, mean, min, max and nearest-rank
 * percentiles, computed once over a sorted copy. Reports quote these, so the definition is fixed here: the p-th
 * percentile is the smallest sample such that at least p % of the samples are at or below it.
 */

/** What a report shows for one series of samples. */
export interface Summary {
  readonly count: number
  readonly mean: number
  readonly min: number
  readonly max: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
}

/** The nearest-rank percentile `p` (0 < p ≤ 100) of ascending `sorted` samples; NaN when there are none. */
const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(rank, sorted.length) - 1]!
}

/** Summarises samples; every figure is NaN (count 0) when there are none. */
export const summarize = (samples: ReadonlyArray<number>): Summary => {
  const sorted = Float64Array.from(samples).sort()
  const values = Array.from(sorted)
  let sum = 0
  for (const value of values) sum += value
  return {
    count: values.length,
    mean: values.length === 0 ? Number.NaN : sum / values.length,
    min: values.length === 0 ? Number.NaN : values[0]!,
    max: values.length === 0 ? Number.NaN : values[values.length - 1]!,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99)
  }
}
