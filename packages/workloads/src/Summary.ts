/**
 * Summary statistics of samples (latencies, batch sizes): count, mean, min, max and nearest-rank percentiles.
 * Reports, the host's simulator line and the fault tests quote these, so the definition is fixed here, once: the
 * p-th percentile is the smallest sample such that at least p % of the samples are at or below it.
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
const nearestRank = (sorted: ArrayLike<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(rank, sorted.length) - 1]!
}

/** An ascending copy of `samples`. */
const sortedCopy = (samples: ReadonlyArray<number>): Float64Array => Float64Array.from(samples).sort()

/** The nearest-rank percentile `p` (0 < p ≤ 100) of `samples`, in any order; NaN when there are none. */
export const percentile = (samples: ReadonlyArray<number>, p: number): number => nearestRank(sortedCopy(samples), p)

/** Summarises samples; every figure is NaN (count 0) when there are none. */
export const summarize = (samples: ReadonlyArray<number>): Summary => {
  const sorted = sortedCopy(samples)
  let sum = 0
  for (const value of sorted) sum += value
  return {
    count: sorted.length,
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    min: sorted.length === 0 ? Number.NaN : sorted[0]!,
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
    p50: nearestRank(sorted, 50),
    p95: nearestRank(sorted, 95),
    p99: nearestRank(sorted, 99)
  }
}
