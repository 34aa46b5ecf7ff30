/**
 * Reading a submission (`Request`): the hand-written check of plainly valid ops agrees with `Op.decodeOps`, which
 * has the last word — on every op it takes, on the value it builds, and on what is wrong when it does not take one;
 * the limits skip only the walks a text that short cannot fail.
 */
import { assert, describe, it } from "@effect/vitest"
import { Op } from "@sectors/core"
import { Arbitraries } from "@sectors/core/testing"
import { Effect, Result } from "effect"
import * as fc from "fast-check"
import * as HostConfig from "../src/HostConfig.ts"
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

describe("Request.limitIssues", () => {
  /** A JSON number as a client may write it: exponents, fractions, signs — the forms that stringify longer. */
  const numberText = fc.oneof(
    fc.tuple(fc.integer({ min: -99, max: 999 }), fc.integer({ min: -330, max: 330 }), fc.constantFrom("e", "E", "e+"))
      .map(([mantissa, exponent, e]) => `${mantissa}${e}${exponent}`.replace("e+-", "e-")),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
    fc.constantFrom("1e20", "-1e20", "9e20", "1E20", "1e-6", "-0", "0.0000001", "123e18", "5e-324")
  )
  /** A JSON string as a client may write it: escapes, astral characters, lone surrogates. */
  const stringText = fc.array(
    fc.oneof(
      fc.string({ unit: "binary", maxLength: 3 }).map((s) => JSON.stringify(s).slice(1, -1)),
      fc.constantFrom("\\u00e9", "\\ud800", "\\ud83d\\ude00", "\\/", "\\n", "é", "😀")
    ),
    { maxLength: 4 }
  ).map((parts) => `"${parts.join("")}"`)
  /** JSON text of data: nested objects and arrays of those, with whitespace. */
  const dataText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      numberText,
      stringText,
      fc.constantFrom("true", "false", "null"),
      fc.array(tie("value"), { maxLength: 3 }).map((items) => `[ ${items.join(" , ")} ]`),
      fc.array(fc.tuple(stringText, tie("value")), { maxLength: 3 })
        .map((entries) => `{${entries.map(([key, value]) => `${key}: ${value}`).join(",")}}`)
    )
  })).value
  const utf8Bytes = (text: string) => Buffer.byteLength(text, "utf8")

  it("never sees data stringify to more than stringifyGrowth bytes per character of the text it came from", () =>
    fc.assert(fc.property(dataText, (text) => {
      assert.isAtMost(utf8Bytes(JSON.stringify(JSON.parse(text))), Request.stringifyGrowth * text.length, text)
    }), { numRuns: 5000 }))

  it("finds the same issues with the text's length as without it, whatever the limits", () =>
    fc.assert(fc.property(
      fc.array(dataText, { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 1, max: 400 }),
      fc.integer({ min: 0, max: 6 }),
      (datas, maxDataBytes, extraDepth) => {
        const nested = "[".repeat(extraDepth * 12) + "1" + "]".repeat(extraDepth * 12)
        const text = `{"ops": [${datas.map((data) => `{"type": "set", "entity": 1, "component": "c", "data": ${data}}`).join(",")}], "x": ${nested}}`
        const config = { ...HostConfig.defaults, maxDataBytes }
        const body = JSON.parse(text)
        assert.deepStrictEqual(Request.limitIssues(body, config, text.length), Request.limitIssues(body, config))
      }
    ), { numRuns: 2000 }))
})
