/**
 * Reading an `/ingest` frame: the hand-written read of a plainly valid frame (`plainFrame`) takes a frame only where
 * the full check (`checkFrame`, which has the last word and says what is wrong) takes it, and reads it the same.
 */
import { assert, describe, it } from "@effect/vitest"
import { Arbitraries } from "@sectors/core/testing"
import * as fc from "fast-check"
import * as HostConfig from "../src/HostConfig.ts"
import * as Ingest from "../src/Ingest.ts"
import { changed } from "./frames.ts"

const config = { ...HostConfig.defaults, maxOpsPerRequest: 3 }

/** A field's value: valid ones, and each way it can be wrong. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom("accepted", "durable", "other", "", "7", "-1", "1.5", "1e3", " 7", "k-1"),
  fc.integer({ min: -2, max: 5 }),
  fc.constantFrom(-0, 1.5, 1e21, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, null, true),
  fc.constant({}),
  fc.constant([]),
  fc.array(Arbitraries.op(), { minLength: 0, maxLength: 4 })
)

/** A valid frame, then one or two of its fields replaced, removed or added with any value, in any order. */
const frameLike = fc.tuple(
  fc.record({
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 3 })),
    sector: fc.nat(1_000),
    ops: fc.array(Arbitraries.op(), { minLength: 1, maxLength: 3 }),
    ack: fc.constantFrom("accepted", "durable")
  }, { requiredKeys: ["id", "sector", "ops"] }),
  fc.array(
    fc.tuple(fc.constantFrom("id", "sector", "ops", "ack", "idempotencyKey", "extra"), fc.option(anyValue, { nil: undefined })),
    { maxLength: 2 }
  )
).chain(([frame, changes]) => changed(frame, changes))

/** What a client sends: JSON text, parsed as the host parses it. */
const asParsed = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

describe("Ingest.plainFrame", () => {
  it("takes a frame only where the full check takes it, and reads the same submission", () =>
    fc.assert(
      fc.property(frameLike, (frame) => {
        const body = asParsed(frame)
        const plain = Ingest.plainFrame(body, config.maxOpsPerRequest)
        if (plain !== undefined) assert.deepStrictEqual(plain, Ingest.checkFrame(body, config))
      }),
      { numRuns: 3000 }
    ))

  it("takes the usual frame: a numeric or string id, a sector, plainly valid ops, no key", () =>
    fc.assert(fc.property(
      fc.oneof(fc.integer(), fc.string()),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.array(Arbitraries.op(), { minLength: 1, maxLength: 3 }),
      fc.constantFrom(undefined, "accepted", "durable"),
      (id, sector, ops, ack) => {
        const body = asParsed({ id, sector, ops, ...(ack === undefined ? {} : { ack }) })
        const plain = Ingest.plainFrame(body, config.maxOpsPerRequest)
        assert.isDefined(plain)
        assert.deepStrictEqual(plain, Ingest.checkFrame(body, config))
      }
    )))
})
