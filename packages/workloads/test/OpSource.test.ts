import { assert, describe, it } from "@effect/vitest"
import { Op } from "@sectors/core"
import { Effect, Random } from "effect"
import { OpSource, Workload } from "../src/index.ts"

const workload = Workload.fieldReport.sustained

/** `n` draws of a source for `workload` under `seed`: the sector and the op of each. */
const draws = (seed: number, n: number, of: Workload.Workload = workload) =>
  OpSource.make(of).pipe(
    Effect.map((source) => Array.from({ length: n }, () => ({ sector: source.sector(), op: source.op() }))),
    Random.withSeed(seed)
  )

const share = <A>(items: ReadonlyArray<A>, predicate: (a: A) => boolean) => items.filter(predicate).length / items.length

describe("OpSource", () => {
  it.effect("draws the same sectors and ops under the same seed, and others under another", () =>
    Effect.gen(function*() {
      const first = yield* draws(7, 2_000)
      assert.deepStrictEqual(yield* draws(7, 2_000), first)
      assert.notDeepEqual(yield* draws(8, 2_000), first)
    }))

  it.effect("draws valid ops on the workload's sectors and entities", () =>
    Effect.gen(function*() {
      const drawn = yield* draws(1, 20_000)
      yield* Op.decodeOps(drawn.map((d) => d.op))
      for (const { op, sector } of drawn) {
        assert.isTrue(Number.isInteger(sector) && sector >= 0 && sector < workload.sectors, `sector ${sector}`)
        assert.isTrue(op.entity >= 0 && op.entity < workload.entitiesPerSector, `entity ${op.entity}`)
      }
    }))

  it.effect("puts about 61 % of the ops on the 10 hot entities (60 % hot draws, plus the cold draws that hit them)", () =>
    Effect.gen(function*() {
      const drawn = yield* draws(2, 100_000)
      const expected = OpSource.hotShare + (1 - OpSource.hotShare) * OpSource.hotEntities / workload.entitiesPerSector
      const hot = share(drawn, (d) => d.op.entity < OpSource.hotEntities)
      assert.approximately(hot, expected, 0.01)
    }))

  it.effect("draws mostly sets: 93 % set, 4 % authority, 2 % remove, 1 % delete", () =>
    Effect.gen(function*() {
      const ops = (yield* draws(3, 100_000)).map((d) => d.op)
      for (const type of Op.types) assert.approximately(share(ops, (op) => op.type === type), OpSource.mix[type], 0.005, type)
    }))

  it.effect("writes mostly position and velocity: 60 %, 30 %, and hp 10 %", () =>
    Effect.gen(function*() {
      const ops = (yield* draws(4, 100_000)).map((d) => d.op).filter((op) => op.type !== "delete")
      const component = (name: string) => share(ops, (op) => "component" in op && op.component === name)
      assert.approximately(component("position"), 0.6, 0.01)
      assert.approximately(component("velocity"), 0.3, 0.01)
      assert.approximately(component("hp"), 0.1, 0.01)
    }))

  it.effect("spreads ops evenly over the sectors", () =>
    Effect.gen(function*() {
      const drawn = yield* draws(5, 100_000)
      const perSector = Array.from({ length: workload.sectors }, (_, id) => drawn.filter((d) => d.sector === id).length)
      const mean = drawn.length / workload.sectors
      for (const n of perSector) assert.approximately(n, mean, 0.1 * mean)
    }))

  it.effect("keeps the hot entities within a workload smaller than ten entities", () =>
    Effect.gen(function*() {
      const drawn = yield* draws(6, 5_000, { rate: () => 1, sectors: 1, entitiesPerSector: 3 })
      assert.deepStrictEqual([...new Set(drawn.map((d) => d.op.entity))].sort(), [0, 1, 2])
    }))
})
