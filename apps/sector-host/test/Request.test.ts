/**
 * Reading a submission (`Request`): the hand-written check of plainly valid ops agrees with `Op.decodeOps`, which
 * has the last word — on every op it takes, on the value it builds, and on what is wrong when it does not take one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Op } from "@sectors/core"
import { Arbitraries } from "@sectors/core/testing"
import { Effect, Result } from "effect"
import * as fc from "fast-check"
import * as Request from "../src/Request.ts"

const decodedByCore = (input: unknown, maxOps: number) =>
  Effect.runSync(Effect.result(Op.decodeOps(input, { maxOps })))

/** A field's value: valid ones, and each way it can be wrong. */
const anyValue = fc.oneof(
  fc.constantFrom("set", "remove", "delete", "authority", "other", "", "position", "w-1", "with space", "a\u0000b", "\ud800"),
  fc.integer({ min: -2, max: 5 }),
  fc.constantFrom(1.5, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, null, true),
  fc.constant({}),
  fc.constant([]),
  fc.dictionary(fc.constantFrom("x", "tag", "__proto__", "\u0000", "\udc00"), fc.oneof(fc.integer(), fc.string(), fc.constant({ y: "\u0000" })))
)

/** An op-shaped object: a `type`, some of the fields ops have, sometimes another one, in any order. */
const opLike = fc.record({
  type: anyValue,
  entity: anyValue,
  component: anyValue,
  data: anyValue,
  worker: anyValue,
  extra: anyValue
}, { requiredKeys: [] }).chain((op) => fc.shuffledSubarray(Object.entries(op)).map(Object.fromEntries))

/** What a client sends: JSON text, parsed as the API parses it. */
const asParsed = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

describe("Request.decodeOps", () => {
  it("takes valid ops without a Schema parse, built exactly as Op.decodeOps builds them, whatever the order of their keys", () =>
    fc.assert(fc.property(fc.array(Arbitraries.op(), { minLength: 1, maxLength: 12 }), (ops) => {
      const input = asParsed(ops.map((op) => Object.fromEntries(Object.entries(op).reverse())))
      const plain = Request.plainOps(input, 1000)
      assert.isDefined(plain)
      assert.deepStrictEqual(plain, Result.getOrThrow(decodedByCore(input, 1000)))
    })))

  it("takes an op by hand only where Op.decodeOps takes it, and builds the same op", () =>
    fc.assert(fc.property(fc.array(opLike, { minLength: 0, maxLength: 4 }), fc.integer({ min: 1, max: 4 }), (ops, max) => {
      const input = asParsed(ops)
      const plain = Request.plainOps(input, max)
      if (plain !== undefined) assert.deepStrictEqual(plain, Result.getOrThrow(decodedByCore(input, max)))
    }), { numRuns: 2000 }))

  it("agrees with Op.decodeOps on any op-like input: the same ops, or the same issues", () =>
    fc.assert(fc.property(fc.array(opLike, { minLength: 0, maxLength: 4 }), fc.integer({ min: 1, max: 4 }), (ops, max) => {
      const input = asParsed(ops)
      const ours = Request.decodeOps(input, max)
      const core = decodedByCore(input, max)
      if (Result.isSuccess(core)) assert.deepStrictEqual(ours, Result.succeed(core.success))
      else assert.deepStrictEqual(ours, Result.fail([...core.failure.issues]))
    }), { numRuns: 2000 }))
})
