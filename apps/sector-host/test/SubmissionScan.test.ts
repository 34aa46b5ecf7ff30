/**
 * Reading a submission straight from its text (`SubmissionScan`: an `/ingest` frame, a `POST` body): it takes one
 * only where the full read (`Ingest.parseFrame`, `Request.parseSubmission`: `JSON.parse`, the limits, the field
 * checks) takes it, reads the same submission, and tells `Batch.cellBytes` each `set` op's data length exactly as
 * `JSON.stringify` measures it — over submissions written the way a client's `JSON.stringify` writes them and every
 * other way JSON allows (whitespace, escapes, numbers in other forms, duplicate keys), submissions one or two fields
 * away from valid, and texts that are not JSON at all.
 */
import { assert, describe, it } from "@effect/vitest"
import { Batch, type Op } from "@sectors/core"
import { Arbitraries } from "@sectors/core/testing"
import { Result } from "effect"
import * as fc from "fast-check"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as HostConfig from "../src/HostConfig.ts"
import * as Ingest from "../src/Ingest.ts"
import * as Request from "../src/Request.ts"
import * as SubmissionScan from "../src/SubmissionScan.ts"
import { changed } from "./frames.ts"

/** A tape of choices for `write`, read round and round. */
type Tape = ReadonlyArray<number>

/**
 * `value` as JSON text: as `JSON.stringify` writes it where the tape says 0, otherwise another way JSON allows — or
 * does not: 1 a space around a token; 2 a string's first character as `\u` escape, 3 a `\/` escape, 4 a string
 * written raw (a lone surrogate or a control character as it is, not JSON if it holds `"` or `\`); 5 a number with a
 * fraction or an exponent, 6 an exponent with `E`, 7 `-0` for 0 and a leading zero for a positive integer (not JSON);
 * 8 an object's first member written twice.
 */
const write = (value: unknown, tape: Tape): string => {
  let at = 0
  const choice = () => tape.length === 0 ? 0 : tape[at++ % tape.length]!
  const space = () => choice() === 1 ? " " : ""
  const string = (text: string) => {
    const written = JSON.stringify(text)
    switch (choice()) {
      case 2:
        return text.length === 0 ? written : `"\\u${text.charCodeAt(0).toString(16).padStart(4, "0")}${written.slice(2)}`
      case 3:
        return `"\\/${written.slice(1)}`
      case 4:
        return `"${text}"`
      default:
        return written
    }
  }
  const number = (n: number) => {
    switch (choice()) {
      case 5:
        return Number.isInteger(n) ? `${n}.0` : n.toExponential()
      case 6:
        return n.toExponential().toUpperCase()
      case 7:
        return n === 0 ? "-0" : Number.isInteger(n) && n > 0 ? `0${n}` : String(n)
      default:
        return JSON.stringify(n)
    }
  }
  const go = (value: unknown): string => {
    if (typeof value === "string") return space() + string(value) + space()
    if (typeof value === "number") return space() + number(value) + space()
    if (Array.isArray(value)) return `${space()}[${value.map(go).join(",")}]${space()}`
    if (value !== null && typeof value === "object") {
      const members = Object.entries(value).map(([key, inner]) => `${space()}${string(key)}${space()}:${go(inner)}`)
      if (members.length > 0 && choice() === 8) members.push(members[0]!)
      return `${space()}{${members.join(",")}}${space()}`
    }
    return space() + JSON.stringify(value) + space()
  }
  return go(value)
}

/** Tapes: as `JSON.stringify` writes, or one kind of other writing now and then (so that the rest stays plain), or any. */
const tape: fc.Arbitrary<Tape> = fc.oneof(
  { arbitrary: fc.constant([]), weight: 3 },
  ...[[1], [2, 3, 4], [5, 6], [7], [8], [1, 2, 3, 4, 5, 6, 7, 8]].map((kinds) => ({
    arbitrary: fc.array(
      fc.oneof({ arbitrary: fc.constant(0), weight: 8 }, { arbitrary: fc.constantFrom(...kinds), weight: 1 }),
      { minLength: 1, maxLength: 40 }
    ),
    weight: kinds.length === 2 ? 3 : 1
  }))
)

/** A key or string in data: plain, or with what JSON must escape or PostgreSQL cannot store. */
const text = fc.oneof(
  {
    arbitrary: fc.string({ unit: fc.constantFrom("a", "b", "Y", "0", " ", "_", "é", "😀", "\u007f", "\u2028"), maxLength: 5 }),
    weight: 8
  },
  { arbitrary: fc.string({ maxLength: 5 }), weight: 1 },
  { arbitrary: fc.constantFrom("__proto__", "constructor", "toString", "1", "01", "\u0000", "\ud800", "a\"b", "a\\b", "\n", "é", "😀", "\u2028", "\u007f"), weight: 1 }
)

/** A number in data, from the plain to the ones JSON writes in other forms. */
const number = fc.oneof(
  { arbitrary: fc.integer({ min: -2000, max: 2000 }), weight: 4 },
  fc.constantFrom(0, -0, 0.5, -1.25, 1e21, 1e-7, 123456789012345, 1234567890123456, 2 ** 53 + 2, 1.7976931348623157e308, 5e-324),
  fc.double({ noNaN: true, noDefaultInfinity: true })
)

/** A JSON object for an op's `data`. */
const data: fc.Arbitrary<Record<string, unknown>> = fc.letrec<{ value: unknown; object: Record<string, unknown> }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    number,
    text,
    fc.constantFrom(true, false, null),
    fc.array(tie("value"), { maxLength: 3 }),
    tie("object")
  ),
  object: fc.dictionary(text, tie("value"), { maxKeys: 4 })
})).object

/** An op: a valid one of any kind (with any data), or one with a field wrong, missing or extra. */
const op: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: Arbitraries.op(), weight: 3 },
  {
    arbitrary: fc.record({
      type: fc.constant("set"),
      entity: fc.oneof({ arbitrary: fc.nat(1_000), weight: 8 }, fc.constantFrom(-1, 1.5, 2 ** 53, 999_999_999_999_999)),
      component: fc.oneof(
        { arbitrary: fc.constantFrom("position", "a.b-c_D9", "x".repeat(64)), weight: 8 },
        fc.string({ maxLength: 3 }),
        fc.constant("x".repeat(65))
      ),
      data
    }),
    weight: 6
  },
  {
    arbitrary: fc.tuple(
      Arbitraries.op(),
      fc.constantFrom("type", "entity", "component", "data", "worker", "extra"),
      fc.option(fc.oneof(number, text, data, fc.constantFrom(null, "set", "delete", "authority", "w-1", "w\"1")), { nil: undefined })
    ).map(([op, field, value]) => {
      const changed: Record<string, unknown> = { ...op }
      if (value === undefined) delete changed[field]
      else changed[field] = value
      return changed
    }),
    weight: 1
  }
)

/** A frame: valid, or with one or two of its fields replaced, removed or added, in any order. */
const frame = fc.tuple(
  fc.record({
    id: fc.oneof(
      { arbitrary: fc.integer(), weight: 4 },
      { arbitrary: fc.string({ maxLength: 3 }), weight: 2 },
      fc.constantFrom(-0, 1.5, 1e21, "\ud800")
    ),
    sector: fc.oneof(
      { arbitrary: fc.nat(1_000), weight: 6 },
      fc.constantFrom(-0, -1, 1.5, 2 ** 53, 999_999_999_999_999, 1_000_000_000_000_000)
    ),
    ops: fc.array(op, { minLength: 1, maxLength: 3 }),
    ack: fc.constantFrom("accepted", "durable")
  }, { requiredKeys: ["id", "sector", "ops"] }),
  fc.oneof(
    { arbitrary: fc.constant([]), weight: 3 },
    fc.array(
      fc.tuple(
        fc.constantFrom("id", "sector", "ops", "ack", "idempotencyKey", "extra"),
        fc.option(fc.oneof(text, number, fc.constantFrom(null, "durable", [], {}, "k-1")), { nil: undefined })
      ),
      { minLength: 1, maxLength: 2 }
    )
  )
).chain(([frame, changes]) => changed(frame, changes))

/** A `POST` body: `{"ops": [...]}`, or with its field replaced or removed, or another added, in any order. */
const body = fc.tuple(
  fc.record({ ops: fc.array(op, { minLength: 1, maxLength: 3 }) }),
  fc.oneof(
    { arbitrary: fc.constant([]), weight: 3 },
    fc.array(
      fc.tuple(
        fc.constantFrom("ops", "id", "extra"),
        fc.option(
          fc.oneof(text, number, fc.constantFrom(null, [], {}, [{}]), fc.array(Arbitraries.op(), { minLength: 1, maxLength: 2 })),
          { nil: undefined }
        )
      ),
      { minLength: 1, maxLength: 2 }
    )
  )
).chain(([body, changes]) => changed(body, changes))

/** The text of `value`: written one way or another, or cut short (not JSON). */
const textOf = (value: fc.Arbitrary<unknown>) =>
  fc.tuple(value, tape, fc.oneof({ arbitrary: fc.constant(null), weight: 8 }, fc.nat())).map(([value, choices, cut]) => {
    const written = write(value, choices)
    return cut === null ? written : written.slice(0, cut % (written.length + 1))
  })

const frameText = textOf(frame)
const bodyText = textOf(body)

/**
 * Each `set` op's length is measured (an op left unmeasured would be stringified again by the sector), and is what
 * `cellBytes` measures (its data stringified); none for a non-set.
 */
const measuredAsCellBytes = (ops: ReadonlyArray<Op.Op>, dataLengths: Batch.DataLengths) => {
  assert.strictEqual(dataLengths.length, ops.length)
  ops.forEach((op, i) => {
    assert.strictEqual(Batch.cellBytes(op, dataLengths[i]), Batch.cellBytes(op))
    if (op.type === "set") assert.strictEqual(dataLengths[i], JSON.stringify(op.data).length)
    else assert.isUndefined(dataLengths[i])
  })
}

const configs = fc.record({
  maxOpsPerRequest: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(HostConfig.defaults.maxOpsPerRequest)),
  // small enough that `data` can be over it, and the limits' shortcut for short texts not always taken
  maxDataBytes: fc.oneof(fc.integer({ min: 1, max: 400 }), fc.constant(HostConfig.defaults.maxDataBytes))
}).map((limits) => ({ ...HostConfig.defaults, ...limits }))

describe("SubmissionScan.frame", () => {
  it("takes a frame only where the full read takes it, reads the same submission, and measures data as cellBytes does", () =>
    fc.assert(
      fc.property(frameText, configs, (text, config) => {
        const scanned = SubmissionScan.frame(text, config)
        if (scanned === undefined) return
        const { dataLengths, ...read } = scanned
        assert.deepStrictEqual<unknown>(read, Ingest.parseFrame(text, config))
        measuredAsCellBytes(scanned.ops, dataLengths)
      }),
      { numRuns: 20_000 }
    ))

  it("takes the usual frame: as JSON.stringify writes it, an integer id or one JSON needs no escape for, plainly valid ops, no key", () =>
    fc.assert(fc.property(
      fc.oneof(
        fc.integer({ min: -(10 ** 15) + 1, max: 10 ** 15 - 1 }),
        fc.string().filter((id) => JSON.stringify(id) === `"${id}"`)
      ),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.array(Arbitraries.op(), { minLength: 1, maxLength: 3 }),
      fc.constantFrom(undefined, "accepted", "durable"),
      (id, sector, ops, ack) => {
        const text = JSON.stringify({ id, sector, ops, ...(ack === undefined ? {} : { ack }) })
        const config = { ...HostConfig.defaults, maxOpsPerRequest: 3 }
        const scanned = SubmissionScan.frame(text, config)
        assert.isDefined(scanned)
        const { dataLengths: _, ...read } = scanned
        assert.deepStrictEqual<unknown>(read, Ingest.parseFrame(text, config))
      }
    )))

  it("gives up on what it does not read the way the full read does", () => {
    const config = HostConfig.defaults
    const op = `{"type":"set","entity":1,"component":"c","data":{"x":1}}`
    for (
      const text of [
        `{"id":1,"sector":2,"ops":[${op}]} `,
        `{"id":1,"sector":2,"ops":[${op}],"idempotencyKey":"k"}`,
        `{"id":1,"sector":2,"ops":[${op}],"id":2}`,
        `{"id":1,"sector":2,"ops":[{"type":"set","entity":1,"component":"c","data":{"x":1,"x":2}}]}`,
        `{"id":1,"sector":2,"ops":[{"type":"set","entity":1,"component":"c","data":{"__proto__":{}}}]}`,
        `{"id":1,"sector":2,"ops":[{"type":"set","entity":1,"component":"c","data":{"x":"\\u0061"}}]}`,
        `{"id":1,"sector":2,"ops":[{"type":"set","entity":1,"component":"c","data":{"x":-0}}]}`,
        `{"id":1,"sector":2,"ops":[{"type":"set","entity":1,"component":"c","data":{"x":"\ud800"}}]}`,
        `{"id":1,"sector":-0,"ops":[${op}]}`,
        `{"id":-0,"sector":2,"ops":[${op}]}`,
        `{"id":1,"sector":2,"ops":[]}`,
        `{"id":1,"sector":2,"ops":[${op}],"ack":"Durable"}`,
        // nested past `Request.maxJsonDepth` (413 the full way)
        `{"id":1,"sector":2,"ops":[{"type":"set","entity":1,"component":"c","data":${"{\"a\":".repeat(70)}1${"}".repeat(70)}}]}`
      ]
    ) assert.isUndefined(SubmissionScan.frame(text, config), text)
  })
})

/** A submission's other parts: valid, or not (so that the issues of the body and of the parts come together). */
const parts = fc.record({
  sector: fc.constantFrom("7", "0", "x", undefined),
  ack: fc.constantFrom(undefined, "accepted", "durable", "soon"),
  idempotencyKey: fc.constantFrom(undefined, "k-1", "not a key")
})

describe("SubmissionScan.body", () => {
  it("reads a POST as the full read does, whatever its text and parts, and measures data as cellBytes does", () =>
    fc.assert(
      fc.property(bodyText, parts, configs, (text, parts, config) => {
        const read = Request.readSubmission(text, parts, config)
        const full = Request.parseSubmission(text, parts, config)
        if (read._tag === "Failure") return assert.deepStrictEqual<unknown>(read, full)
        const { dataLengths, ...submission } = read.success
        assert.deepStrictEqual<unknown>(Result.succeed(submission), full)
        const scanned = SubmissionScan.body(text, config)
        // the lengths come from the scan, and only from it
        assert.deepStrictEqual(dataLengths, scanned?.dataLengths)
        if (dataLengths !== undefined) measuredAsCellBytes(submission.ops, dataLengths)
      }),
      { numRuns: 20_000 }
    ))

  it("takes the usual body: {\"ops\": [...]} as JSON.stringify writes it, plainly valid ops", () =>
    fc.assert(fc.property(fc.array(Arbitraries.op(), { minLength: 1, maxLength: 3 }), (ops) => {
      const text = JSON.stringify({ ops })
      const config = { ...HostConfig.defaults, maxOpsPerRequest: 3 }
      const scanned = SubmissionScan.body(text, config)
      assert.isDefined(scanned)
      assert.deepStrictEqual<unknown>(scanned.ops, Result.getOrThrow(Request.parseSubmission(text, { sector: "1", ack: undefined, idempotencyKey: undefined }, config)).ops)
    })))

  it("gives up on what it does not read the way the full read does", () => {
    const config = HostConfig.defaults
    const op = `{"type":"set","entity":1,"component":"c","data":{"x":1}}`
    for (
      const text of [
        `{"ops":[${op}]} `,
        ` {"ops":[${op}]}`,
        `{"ops":[${op}],"ops":[${op}]}`,
        `{"ops":[${op}],"id":1}`,
        `{"ops":[]}`,
        `{"ops":{}}`,
        `{"ops":[${op}]`,
        `{"ops":[{"type":"set","entity":1,"component":"c","data":{"x":"\\u0061"}}]}`,
        `{"ops":[{"type":"set","entity":1,"component":"c","data":{"x":"\ud800"}}]}`
      ]
    ) assert.isUndefined(SubmissionScan.body(text, config), text)
  })
})

describe("SubmissionScan and memory", () => {
  it("keeps no view into the text it read: a long component, worker or string is a copy, not the whole frame held alive", () => {
    v8.setFlagsFromString("--expose-gc")
    const gc = vm.runInNewContext("gc") as () => void
    const config = { ...HostConfig.defaults, maxBodyBytes: 2 ** 23, maxDataBytes: 2 ** 23 }
    const pad = "p".repeat(2 ** 20)
    const name = "a-long-component-name"
    const kept: Array<unknown> = []
    gc()
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < 16; i++) {
      // each text a fresh string of over a MiB; only a few short strings of it are kept
      const ops = [
        { type: "set", entity: 1, component: `${name}-${i}`, data: { s: `a-long-string-value-${i}`, pad } },
        { type: "authority", entity: 1, component: `${name}-${i}`, worker: `a-long-worker-id-${i}` }
      ]
      const scanned = i % 2 === 0
        ? SubmissionScan.frame(JSON.stringify({ id: i, sector: 1, ops }), config)
        : SubmissionScan.body(JSON.stringify({ ops }), config)
      assert.isDefined(scanned)
      const [set, authority] = scanned.ops as [Extract<Op.Op, { type: "set" }>, Extract<Op.Op, { type: "authority" }>]
      kept.push(set.component, (set.data as { s: string }).s, authority.worker)
    }
    gc()
    const grown = process.memoryUsage().heapUsed - before
    assert.strictEqual(kept.length, 48)
    // views would hold 16 texts of a MiB each
    assert.isBelow(grown, 4 * 2 ** 20, `the heap grew by ${Math.round(grown / 2 ** 20)} MiB`)
  })
})
