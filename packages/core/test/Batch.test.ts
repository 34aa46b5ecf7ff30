import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Batch, type Op, SectorState } from "../src/index.ts"
import { Arbitraries } from "../src/testing.ts"

const rowsOf = (state: SectorState.SectorState) => SectorState.toRows(state)

/** Applying the collapsed entries of `rest` over the fold of `prefix` — what a sink does with a batch. */
const persisted = (prefix: ReadonlyArray<Op.Op>, rest: ReadonlyArray<Op.Op>, entries = Batch.collapse(rest, prefix.length + 1)) => {
  const state = SectorState.fold(prefix)
  SectorState.applyEntries(state, entries)
  return rowsOf(state)
}

const keyOf = (entry: Batch.Entry) => `${entry._tag === "Authority" ? "authority" : entry._tag === "Delete" ? "entity" : "component"}:${entry.entity}:${"component" in entry ? entry.component : ""}`

describe("collapsing", () => {
  it("persisting the collapsed batch yields the rows of applying every op in order", () =>
    fc.assert(fc.property(Arbitraries.ops(), Arbitraries.ops(), (prefix, rest) => {
      assert.deepStrictEqual(persisted(prefix, rest), rowsOf(SectorState.fold([...prefix, ...rest])))
    }), { numRuns: 500 }))

  it("writes each key at most once per batch (one upsert statement may not touch a key twice)", () =>
    fc.assert(fc.property(Arbitraries.ops(), (ops) => {
      const keys = Batch.collapse(ops).map(keyOf)
      assert.strictEqual(new Set(keys).size, keys.length)
    })))

  it("never holds more entries than ops", () =>
    fc.assert(fc.property(Arbitraries.ops(), (ops) => {
      assert.isAtMost(Batch.collapse(ops).length, ops.length)
    })))

  it("merging an older buffer with a newer one equals collapsing all their ops in order", () =>
    fc.assert(fc.property(Arbitraries.ops(), Arbitraries.ops(), Arbitraries.ops(), (prefix, older, newer) => {
      const a = new Batch.Pending()
      const b = new Batch.Pending()
      let seq = prefix.length + 1
      for (const op of older) a.add(op, seq++, 0)
      for (const op of newer) b.add(op, seq++, 0)
      const merged = a.merge(b)
      assert.strictEqual(merged.ops, older.length + newer.length)
      assert.deepStrictEqual(
        persisted(prefix, [...older, ...newer], merged.entries()),
        rowsOf(SectorState.fold([...prefix, ...older, ...newer]))
      )
      const all = new Batch.Pending()
      seq = prefix.length + 1
      for (const op of [...older, ...newer]) all.add(op, seq++, 0)
      assert.isAtMost(merged.keys, all.keys)
      assert.strictEqual(merged.keys, merged.entries().length)
    }), { numRuns: 300 }))

  it("entries can be applied in any order, in parts, and again, with the same result (seq guards)", () =>
    fc.assert(fc.property(
      Arbitraries.ops(),
      Arbitraries.ops(),
      fc.integer({ min: 0, max: 1000 }),
      (prefix, rest, seed) => {
        const entries = Batch.collapse(rest, prefix.length + 1)
        const shuffled = [...entries].sort((a, b) => ((a.seq * 7919 + seed) % 101) - ((b.seq * 7919 + seed) % 101))
        const state = SectorState.fold(prefix)
        const middle = shuffled.length >> 1
        SectorState.applyEntries(state, shuffled.slice(middle))
        SectorState.applyEntries(state, shuffled.slice(0, middle))
        SectorState.applyEntries(state, entries)
        assert.deepStrictEqual(rowsOf(state), rowsOf(SectorState.fold([...prefix, ...rest])))
      }
    ), { numRuns: 300 }))

  it("keeps the last write per key", () => {
    const entries = Batch.collapse([
      { type: "set", entity: 1, component: "a", data: { v: 1 } },
      { type: "set", entity: 1, component: "a", data: { v: 2 } },
      { type: "set", entity: 1, component: "a", data: { v: 3 } }
    ])
    assert.deepStrictEqual(entries, [{ _tag: "Upsert", entity: 1, component: "a", data: { v: 3 }, seq: 3 }])
  })

  it("lets a delete supersede every earlier op on the entity, and a later set win over it", () => {
    const entries = Batch.collapse([
      { type: "set", entity: 1, component: "a", data: { v: 1 } },
      { type: "authority", entity: 1, component: "a", worker: "w-1" },
      { type: "set", entity: 1, component: "b", data: { v: 1 } },
      { type: "delete", entity: 1 },
      { type: "remove", entity: 1, component: "b" },
      { type: "set", entity: 1, component: "a", data: { v: 2 } }
    ])
    assert.deepStrictEqual(entries, [
      { _tag: "Delete", entity: 1, seq: 4 },
      { _tag: "Upsert", entity: 1, component: "a", data: { v: 2 }, seq: 6 }
    ])
  })

  it("keeps authority beside the data of the same component", () => {
    const entries = Batch.collapse([
      { type: "set", entity: 1, component: "a", data: { v: 1 } },
      { type: "authority", entity: 1, component: "a", worker: "w-1" },
      { type: "authority", entity: 1, component: "a", worker: "w-2" }
    ])
    assert.deepStrictEqual(entries, [
      { _tag: "Upsert", entity: 1, component: "a", data: { v: 1 }, seq: 1 },
      { _tag: "Authority", entity: 1, component: "a", worker: "w-2", seq: 3 }
    ])
  })

  it("counts distinct pending keys, tombstones included", () => {
    const pending = new Batch.Pending()
    pending.add({ type: "set", entity: 1, component: "a", data: {} }, 1, 0)
    pending.add({ type: "set", entity: 1, component: "a", data: {} }, 2, 0)
    pending.add({ type: "set", entity: 2, component: "a", data: {} }, 3, 0)
    assert.strictEqual(pending.keys, 2)
    pending.add({ type: "delete", entity: 1 }, 4, 0)
    assert.strictEqual(pending.keys, 2)
    assert.strictEqual(pending.ops, 4)
    assert.deepStrictEqual([pending.fromSeq, pending.toSeq], [1, 4])
  })
})
