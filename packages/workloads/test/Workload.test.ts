import { assert, describe, it } from "@effect/vitest"
import { Workload } from "../src/index.ts"

const { bursty, ramp, sporadic, sustained } = Workload.fieldReport

describe("Workload", () => {
  it("names every workload of the field report, and runs each over 50 sectors of 500 entities", () => {
    assert.deepStrictEqual(Object.keys(Workload.fieldReport).sort(), [...Workload.scenarios].sort())
    for (const scenario of Workload.scenarios) {
      assert.strictEqual(Workload.fieldReport[scenario].sectors, 50)
      assert.strictEqual(Workload.fieldReport[scenario].entitiesPerSector, 500)
    }
  })

  it("sustained offers 10 000 ops/s at every moment", () => {
    for (const t of [0, 0.5, 1, 59.99, 3600]) assert.strictEqual(sustained.rate(t), 10_000)
  })

  it("bursty offers 5 000 ops/s for 10 s, then 100 ops/s for 10 s, repeating", () => {
    for (const t of [0, 9.99, 20, 29.99, 40]) assert.strictEqual(bursty.rate(t), 5_000, `t=${t}`)
    for (const t of [10, 19.99, 30, 39.99, 50]) assert.strictEqual(bursty.rate(t), 100, `t=${t}`)
  })

  it("sporadic offers 5 ops/s in every third second and nothing in between", () => {
    const perSecond = Array.from({ length: 9 }, (_, t) => sporadic.rate(t + 0.5))
    assert.deepStrictEqual(perSecond, [5, 0, 0, 5, 0, 0, 5, 0, 0])
  })

  it("ramp starts at 10 ops/s, adds 100 ops/s every 30 s and stops at 5 000", () => {
    assert.strictEqual(ramp.rate(0), 10)
    assert.strictEqual(ramp.rate(29.99), 10)
    assert.strictEqual(ramp.rate(30), 110)
    assert.strictEqual(ramp.rate(90), 310)
    assert.strictEqual(ramp.rate(49 * 30), 4_910)
    assert.strictEqual(ramp.rate(50 * 30), 5_000)
    assert.strictEqual(ramp.rate(10 * 3600), 5_000)
  })
})
