import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { type Op, SectorState } from "../../src/index.ts"
import { Backlog } from "../../src/internal/backlog.ts"
import { Arbitraries } from "../../src/testing.ts"

const make = (maxBatch = 4, maxPendingKeys = 1000) => {
  let gauge = 0
  let bytes = 0
  const backlog = new Backlog({
    nextSeq: 1,
    maxBatch,
    maxPendingKeys,
    onKeys: (delta) => (gauge += delta),
    onBytes: (delta) => (bytes += delta)
  })
  return { backlog, gauge: () => gauge, bytes: () => bytes }
}

const recount = (backlog: Backlog) => {
  let ops = 0
  let keys = 0
  for (const segment of backlog.waiting()) {
    ops += segment.ops
    keys += segment.keys
  }
  return { ops, keys }
}

/** One step of a flusher's life: accept a submission, take a batch, then commit or requeue it. */
type Step =
  | { readonly _tag: "accept"; readonly ops: ReadonlyArray<Op.Op> }
  | { readonly _tag: "take"; readonly outcome: "commit" | "requeue" | "requeueApart" }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ _tag: fc.constant("accept" as const), ops: Arbitraries.ops({}, { min: 1, max: 9 }) }),
  fc.record({ _tag: fc.constant("take" as const), outcome: fc.constantFrom("commit", "requeue", "requeueApart") })
)

describe("Backlog", () => {
  it("gives gap-free seqs and opens a new segment every maxBatch ops", () => {
    const { backlog } = make(3)
    assert.strictEqual(backlog.accept([{ type: "delete", entity: 1 }, { type: "delete", entity: 2 }], 0, () => {}, undefined), 1)
    assert.strictEqual(
      backlog.accept([{ type: "delete", entity: 3 }, { type: "delete", entity: 4 }], 0, () => {}, undefined),
      3
    )
    assert.strictEqual(backlog.nextSeq, 5)
    assert.deepStrictEqual(backlog.waiting().map((s) => [s.fromSeq, s.toSeq]), [[1, 3], [4, 4]])
  })

  it("keeps its op, key and byte counts, and what it reports, equal to what its segments hold", () =>
    fc.assert(fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
      const { backlog, bytes, gauge } = make()
      for (const s of steps) {
        if (s._tag === "accept") backlog.accept(s.ops, 0, () => {}, undefined)
        else if (backlog.first !== undefined) {
          backlog.take()
          if (s.outcome === "commit") backlog.commit()
          else backlog.requeue(s.outcome === "requeue")
        }
        assert.deepStrictEqual({ ops: backlog.ops, keys: backlog.keys }, recount(backlog))
        assert.strictEqual(gauge(), backlog.keys)
        const held = backlog.waiting().reduce((n, segment) => n + segment.bytes, backlog.inFlight?.bytes ?? 0)
        assert.strictEqual(backlog.bytes, held)
        assert.strictEqual(bytes(), held)
        for (const segment of backlog.waiting()) assert.isAtMost(segment.ops, 4)
      }
    })))

  it("loses nothing to failed batches: committed plus waiting always persists the fold of every op", () =>
    fc.assert(fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
      const { backlog } = make()
      const accepted: Array<Op.Op> = []
      const durable = SectorState.make()
      let committed = 0
      for (const s of steps) {
        if (s._tag === "accept") {
          backlog.accept(s.ops, 0, () => {}, undefined)
          accepted.push(...s.ops)
        } else if (backlog.first !== undefined) {
          const segment = backlog.take()
          if (s.outcome === "commit") {
            SectorState.applyEntries(durable, segment.entries())
            committed += segment.ops
            backlog.commit()
          } else backlog.requeue(s.outcome === "requeue")
        }
      }
      for (const entries of backlog.entries()) SectorState.applyEntries(durable, entries)
      assert.deepStrictEqual(SectorState.toRows(durable), SectorState.toRows(SectorState.fold(accepted)))
      assert.strictEqual(backlog.unflushed, accepted.length - committed)
    })))

  it("drops segments a reload found durable, and everything when cleared", () => {
    const { backlog, bytes, gauge } = make(2)
    backlog.accept([{ type: "delete", entity: 1 }, { type: "delete", entity: 2 }, { type: "delete", entity: 3 }], 0, () => {}, undefined)
    backlog.dropThrough(2)
    assert.deepStrictEqual(backlog.waiting().map((s) => [s.fromSeq, s.toSeq]), [[3, 3]])
    backlog.take()
    assert.strictEqual(backlog.clear(), 1)
    assert.deepStrictEqual([backlog.unflushed, backlog.keys, gauge()], [0, 0, 0])
    assert.deepStrictEqual([backlog.bytes, bytes()], [0, 0])
  })

  it("is full at maxPendingKeys keys", () => {
    const { backlog } = make(10, 2)
    backlog.accept([{ type: "delete", entity: 1 }], 0, () => {}, undefined)
    assert.isFalse(backlog.full)
    backlog.accept([{ type: "delete", entity: 2 }], 0, () => {}, undefined)
    assert.isTrue(backlog.full)
    backlog.take()
    assert.isFalse(backlog.full)
  })

  it("discarding a dead-lettered entry from a segment means it is never sent again", () => {
    const { backlog } = make()
    backlog.accept([
      { type: "set", entity: 1, component: "a", data: { x: 1 } },
      { type: "set", entity: 2, component: "a", data: { x: 2 } }
    ], 0, () => {}, undefined)
    const segment = backlog.take()
    const poison = segment.entries().find((entry) => entry.entity === 2)!
    segment.discard(poison)
    backlog.requeue(true)
    assert.deepStrictEqual([...backlog.entries()].flat().map((entry) => entry.entity), [1])
    assert.strictEqual(backlog.keys, 1)
    assert.deepStrictEqual([backlog.first!.fromSeq, backlog.first!.toSeq], [1, 2])
  })
})
