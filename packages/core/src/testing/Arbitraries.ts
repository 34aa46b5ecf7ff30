/**
 * fast-check arbitraries for property tests of sectors: ops over a realistic key space (a few hot entities take
 * most writes), submissions, arrival timelines over several sectors, and batch policies. Use them to test your
 * own configurations with `ModelCheck`.
 */
import * as Duration from "effect/Duration"
import * as fc from "fast-check"
import { BatchPolicy } from "../BatchPolicy.ts"
import type * as Op from "../Op.ts"

/** The key space ops are drawn from. */
export interface KeySpace {
  /** Entity ids are `0 … entities - 1`. Defaults to 20. */
  readonly entities?: number | undefined
  /** The first `hot` entities get 80 % of the ops. Defaults to 3. */
  readonly hot?: number | undefined
  /** Component names. Defaults to `["position", "velocity", "hp"]`. */
  readonly components?: ReadonlyArray<string> | undefined
  /** Relative weights of set / remove / delete / authority. Defaults to 60 / 15 / 10 / 15. */
  readonly weights?: { readonly set: number; readonly remove: number; readonly delete: number; readonly authority: number }
}

const defaultComponents = ["position", "velocity", "hp"]

/** One op over `space`. */
export const op = (space: KeySpace = {}): fc.Arbitrary<Op.Op> => {
  const entities = space.entities ?? 20
  const hot = Math.min(space.hot ?? 3, entities)
  const weights = space.weights ?? { set: 60, remove: 15, delete: 10, authority: 15 }
  const entity = fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: Math.max(0, hot - 1) }), weight: 4 },
    { arbitrary: fc.integer({ min: 0, max: entities - 1 }), weight: 1 }
  )
  const component = fc.constantFrom(...(space.components ?? defaultComponents))
  const data = fc.record({ x: fc.integer({ min: -1000, max: 1000 }), tag: fc.constantFrom("a", "b", "c") })
  return fc.oneof(
    {
      arbitrary: fc.record({ type: fc.constant("set" as const), entity, component, data }),
      weight: weights.set
    },
    { arbitrary: fc.record({ type: fc.constant("remove" as const), entity, component }), weight: weights.remove },
    { arbitrary: fc.record({ type: fc.constant("delete" as const), entity }), weight: weights.delete },
    {
      arbitrary: fc.record({
        type: fc.constant("authority" as const),
        entity,
        component,
        worker: fc.option(fc.constantFrom("w-1", "w-2", "w-3"), { nil: null })
      }),
      weight: weights.authority
    }
  )
}

/** A sequence of ops. */
export const ops = (space: KeySpace = {}, length: { readonly min?: number; readonly max?: number } = {}) =>
  fc.array(op(space), { minLength: length.min ?? 0, maxLength: length.max ?? 60 })

/** One submission arriving `delay` ms after the previous one. */
export interface Arrival {
  readonly delay: number
  readonly sectorId: number
  readonly ops: ReadonlyArray<Op.Op>
}

/** Options of `timeline`. */
export interface TimelineOptions extends KeySpace {
  /** Sector ids are `0 … sectors - 1`. Defaults to 3. */
  readonly sectors?: number | undefined
  /** Most submissions. Defaults to 40. */
  readonly maxArrivals?: number | undefined
  /** Most ops per submission. Defaults to 8. */
  readonly maxOpsPerArrival?: number | undefined
  /** Longest gap between submissions (ms); bursts are gaps of 0. Defaults to 60. */
  readonly maxGap?: number | undefined
}

/** An arrival timeline: bursts (gap 0), trickles and pauses over a few sectors. */
export const timeline = (options: TimelineOptions = {}): fc.Arbitrary<ReadonlyArray<Arrival>> =>
  fc.array(
    fc.record({
      delay: fc.oneof(
        { arbitrary: fc.constant(0), weight: 3 },
        { arbitrary: fc.integer({ min: 1, max: options.maxGap ?? 60 }), weight: 2 }
      ),
      sectorId: fc.integer({ min: 0, max: (options.sectors ?? 3) - 1 }),
      ops: ops(options, { min: 1, max: options.maxOpsPerArrival ?? 8 })
    }),
    { minLength: 1, maxLength: options.maxArrivals ?? 40 }
  )

/** A batch policy with small numbers, so that every trigger fires within a short timeline. */
export const policy = (): fc.Arbitrary<BatchPolicy> =>
  fc.record({
    minBatch: fc.integer({ min: 1, max: 20 }),
    extra: fc.integer({ min: 0, max: 30 }),
    maxWait: fc.integer({ min: 0, max: 80 }),
    maxPendingKeys: fc.integer({ min: 4, max: 200 })
  }).map(({ extra, maxPendingKeys, maxWait, minBatch }) =>
    BatchPolicy.make({ minBatch, maxBatch: minBatch + extra, maxWait: Duration.millis(maxWait), maxPendingKeys })
  )
