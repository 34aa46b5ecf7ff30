/**
 * The ops a workload offers: entities with hot keys (in each sector the first 10 entities — players, say — are
 * picked for 60 % of the draws, so with 500 entities they take about 61 % of the writes), components mostly
 * `position` and `velocity`, ops mostly `set`s with some authority changes, removes and deletes, and sectors
 * uniformly. Draws come from the fiber's `Random`: under `Random.withSeed` a source draws the same ops every time.
 */
import type { Op } from "@sectors/core"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type { Workload } from "./Workload.ts"

/** Entities per sector that take most of the writes (ids `0 … hotEntities - 1`). */
export const hotEntities = 10

/** The share of entity draws that pick a hot entity. */
export const hotShare = 0.6

/** The share of ops of each type: cumulative thresholds `set` < 0.93 ≤ `authority` < 0.97 ≤ `remove` < 0.99 ≤ `delete`. */
export const mix = { set: 0.93, authority: 0.04, remove: 0.02, delete: 0.01 } as const

/** Draws a workload's ops and the sectors they go to. Synchronous, for tight loops; not shared across fibers. */
export interface OpSource {
  /** A sector id, uniform over the workload's sectors. */
  readonly sector: () => number
  /** One op. */
  readonly op: () => Op.Op
}

/** A source for `workload` drawing from the current `Random` (seed it with `Random.withSeed` to repeat a run). */
export const make = (workload: Workload): Effect.Effect<OpSource> =>
  Effect.map(Random.Random, (random) => {
    const next = () => random.nextDoubleUnsafe()
    const hot = Math.min(hotEntities, workload.entitiesPerSector)
    const entity = () => next() < hotShare ? Math.floor(next() * hot) : Math.floor(next() * workload.entitiesPerSector)
    const component = () => {
      const r = next()
      return r < 0.6 ? "position" : r < 0.9 ? "velocity" : "hp"
    }
    return {
      sector: () => Math.floor(next() * workload.sectors),
      op: (): Op.Op => {
        const r = next()
        if (r < mix.set) {
          return { type: "set", entity: entity(), component: component(), data: { x: Math.round(next() * 1000), y: Math.round(next() * 1000) } }
        }
        if (r < mix.set + mix.authority) {
          return { type: "authority", entity: entity(), component: component(), worker: `w-${Math.floor(next() * 8)}` }
        }
        if (r < mix.set + mix.authority + mix.remove) return { type: "remove", entity: entity(), component: component() }
        return { type: "delete", entity: entity() }
      }
    }
  })
