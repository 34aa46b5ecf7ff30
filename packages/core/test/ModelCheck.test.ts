import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { BatchPolicy } from "../src/index.ts"
import { ModelCheck } from "../src/testing.ts"

const policy = BatchPolicy.BatchPolicy.make({ minBatch: 5, maxBatch: 10, maxWait: Duration.millis(25), maxPendingKeys: 100 })

describe("ModelCheck", () => {
  it.effect("a simple timeline keeps every guarantee", () =>
    Effect.gen(function*() {
      const arrivals = [
        { delay: 0, sectorId: 1, ops: [{ type: "set" as const, entity: 1, component: "a", data: { x: 1 } }] },
        { delay: 3, sectorId: 1, ops: [{ type: "delete" as const, entity: 1 }] },
        { delay: 40, sectorId: 2, ops: [{ type: "set" as const, entity: 2, component: "a", data: { x: 2 } }] }
      ]
      const scenario = { policy, arrivals }
      const outcome = yield* ModelCheck.run(scenario)
      assert.deepStrictEqual(ModelCheck.violations(scenario, outcome), [])
    }))
})
