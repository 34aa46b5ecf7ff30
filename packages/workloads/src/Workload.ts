/**
 * The field report's workloads: how many ops a second are offered at each moment, over how many sectors and
 * entities. What the ops are is `OpSource`; offering them to a host is `Driver`.
 *
 * - `sustained`: 10 000 ops/s;
 * - `bursty`: 5 000 ops/s for 10 s, then 100 ops/s for 10 s, repeating;
 * - `sporadic`: a handful of ops every few seconds (5 ops/s in every third second, none in between);
 * - `ramp`: from 10 ops/s, +100 ops/s every 30 s, up to 5 000 (reached after 25 minutes).
 *
 * Each runs over 50 sectors of 500 entities.
 */

/** The workloads' names. */
export const scenarios = ["sustained", "bursty", "sporadic", "ramp"] as const

/** A workload's name. */
export type Scenario = (typeof scenarios)[number]

/** The shape of a load. */
export interface Workload {
  /** Offered ops per second at `t` seconds from the start. */
  readonly rate: (t: number) => number
  /** Sectors the ops go to, ids `0 … sectors - 1`. */
  readonly sectors: number
  /** Entities per sector, ids `0 … entitiesPerSector - 1`. */
  readonly entitiesPerSector: number
}

/** The field report's test matrix, by scenario. */
export const fieldReport: Readonly<Record<Scenario, Workload>> = {
  sustained: { rate: () => 10_000, sectors: 50, entitiesPerSector: 500 },
  bursty: { rate: (t) => (Math.floor(t / 10) % 2 === 0 ? 5_000 : 100), sectors: 50, entitiesPerSector: 500 },
  sporadic: { rate: (t) => (Math.floor(t) % 3 === 0 ? 5 : 0), sectors: 50, entitiesPerSector: 500 },
  ramp: { rate: (t) => Math.min(5_000, 10 + 100 * Math.floor(t / 30)), sectors: 50, entitiesPerSector: 500 }
}
