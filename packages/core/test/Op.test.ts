import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Op } from "../src/index.ts"

describe("Op.decodeOps", () => {
  it.effect("accepts every kind of op", () =>
    Effect.gen(function*() {
      const ops = yield* Op.decodeOps([
        { type: "set", entity: 42, component: "position", data: { x: 1, y: [1, 2], z: { n: null } } },
        { type: "remove", entity: 42, component: "hp" },
        { type: "delete", entity: 0 },
        { type: "authority", entity: 42, component: "position", worker: "w-7" },
        { type: "authority", entity: 42, component: "position", worker: null }
      ])
      assert.strictEqual(ops.length, 5)
    }))

  it.effect("rejects the whole submission and names every bad op and field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Op.decodeOps([
        { type: "set", entity: 1, component: "ok", data: {} },
        { type: "set", entity: -1, component: "bad name", data: {} },
        { type: "nope", entity: 1 },
        { type: "delete", entity: 1.5 },
        { type: "set", entity: 2, component: "a", data: "not an object" },
        { type: "remove", entity: 3, component: "a", extra: true },
        { type: "set", entity: Number.MAX_SAFE_INTEGER + 1, component: "a", data: {} },
        { type: "authority", entity: 1, component: "a", worker: "has space" },
        7
      ]))
      assert.strictEqual(error._tag, "InvalidOp")
      const where = error.issues.map((issue) => `${issue.index}:${issue.field}`)
      for (
        const expected of [
          "1:entity",
          "1:component",
          "2:type",
          "3:entity",
          "4:data",
          "5:extra",
          "6:entity",
          "7:worker",
          "8:"
        ]
      ) assert.include(where, expected)
      assert.notInclude(where.map((w) => w.split(":")[0]), "0")
    }))

  it.effect("rejects data PostgreSQL's jsonb cannot store (NUL characters)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Op.decodeOps([{ type: "set", entity: 1, component: "a", data: { nested: ["ok", "bad\u0000"] } }])
      )
      assert.deepStrictEqual(error.issues.map((i) => [i.index, i.field]), [[0, "data"]])
      assert.include(error.message, "NUL")
    }))

  it.effect("rejects data with a lone surrogate in a string or a key, and keeps surrogate pairs", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Op.decodeOps([
        { type: "set", entity: 1, component: "a", data: { ok: "\u{1F600}" } },
        { type: "set", entity: 2, component: "a", data: { nested: [{ s: "x\ud800" }] } },
        { type: "set", entity: 3, component: "a", data: { ["\udfff"]: 1 } }
      ]))
      assert.deepStrictEqual(error.issues.map((i) => [i.index, i.field]), [[1, "data"], [2, "data"]])
      assert.include(error.message, "lone surrogates")
      assert.lengthOf(yield* Op.decodeOps([{ type: "set", entity: 1, component: "a", data: { ["\u{1F600}"]: ["\ud83d\ude00"] } }]), 1)
    }))

  it.effect("rejects an empty submission, a non-array and one over maxOps", () =>
    Effect.gen(function*() {
      assert.include((yield* Effect.flip(Op.decodeOps([]))).message, "at least one op")
      assert.include((yield* Effect.flip(Op.decodeOps({ type: "set" }))).message, "array")
      const many = Array.from({ length: 3 }, () => ({ type: "delete", entity: 1 }))
      assert.include((yield* Effect.flip(Op.decodeOps(many, { maxOps: 2 }))).message, "at most 2 ops")
    }))
})
