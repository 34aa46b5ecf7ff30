import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { SectorState } from "../src/index.ts"
import { Arbitraries } from "../src/testing.ts"

describe("SectorState", () => {
  it("reads an entity as its components, authority and latest seq", () => {
    const state = SectorState.fold([
      { type: "set", entity: 42, component: "position", data: { x: 1 } },
      { type: "authority", entity: 42, component: "position", worker: "w-7" },
      { type: "set", entity: 42, component: "hp", data: { v: 9 } },
      { type: "set", entity: 7, component: "hp", data: { v: 1 } }
    ])
    assert.deepStrictEqual(SectorState.view(state, 42), {
      entity: 42,
      components: { position: { x: 1 }, hp: { v: 9 } },
      authority: { position: "w-7" },
      seq: 3
    })
    assert.isUndefined(SectorState.view(state, 1))
  })

  it("forgets an entity with nothing left", () => {
    const state = SectorState.fold([
      { type: "set", entity: 1, component: "a", data: {} },
      { type: "authority", entity: 1, component: "a", worker: "w" },
      { type: "remove", entity: 1, component: "a" },
      { type: "authority", entity: 1, component: "a", worker: null }
    ])
    assert.strictEqual(SectorState.size(state), 0)
  })

  it("round-trips through rows", () =>
    fc.assert(fc.property(Arbitraries.ops(), (ops) => {
      const rows = SectorState.toRows(SectorState.fold(ops))
      assert.deepStrictEqual(SectorState.toRows(SectorState.fromRows(rows)), rows)
    })))
})

describe("component names that are Object.prototype's", () => {
  it("stores and reads back a component or authority named __proto__ like any other", () => {
    const state = SectorState.fold([
      { type: "set", entity: 1, component: "__proto__", data: { x: 1 } },
      { type: "set", entity: 1, component: "constructor", data: { y: 2 } },
      { type: "authority", entity: 1, component: "__proto__", worker: "w-1" }
    ])
    const view = SectorState.view(state, 1)!
    assert.deepStrictEqual(Object.keys(view.components), ["__proto__", "constructor"])
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(view.components, "__proto__")?.value, { x: 1 })
    assert.strictEqual(Object.getPrototypeOf(view.components), Object.prototype)
    assert.strictEqual(JSON.stringify(view.authority), `{"__proto__":"w-1"}`)
  })
})
