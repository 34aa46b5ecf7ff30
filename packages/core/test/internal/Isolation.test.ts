import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as fc from "fast-check"
import { Batch, Errors } from "../../src/index.ts"
import * as Isolation from "../../src/internal/isolation.ts"

const rejected = new Errors.SinkError({ reason: "Rejected", message: "bad row", code: "22P05" })

const entries = (count: number): Array<Batch.Entry> =>
  Array.from({ length: count }, (_, i) => ({ _tag: "Upsert", entity: i, component: "c", data: { i }, seq: i + 1 }))

/** A sink's trial run that rejects any subset holding one of `poison`, and counts its calls. */
const verifier = (poison: ReadonlySet<number>) => {
  let trials = 0
  const verify = (subset: ReadonlyArray<Batch.Entry>) =>
    Effect.suspend(() => {
      trials++
      return subset.some((entry) => poison.has(entry.entity)) ? Effect.fail(rejected) : Effect.void
    })
  return { verify, trials: () => trials }
}

describe("Isolation", () => {
  it("finds exactly the poison entries and keeps every other entry, in a number of trials logarithmic per poison", () =>
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 200 }).chain((n) =>
        fc.tuple(fc.constant(n), fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { minLength: 1, maxLength: 5 }))
      ),
      ([n, bad]) => {
        const { trials, verify } = verifier(new Set(bad))
        const found = Effect.runSync(Isolation.isolate("batch", entries(n), rejected, verify))
        assert.deepStrictEqual(found.poison.map((p) => p.entry.entity).sort((a, b) => a - b), [...bad].sort((a, b) => a - b))
        assert.deepStrictEqual(found.rest.map((e) => e.entity), entries(n).map((e) => e.entity).filter((e) => !bad.includes(e)))
        assert.isAtMost(trials(), bad.length * (2 * Math.ceil(Math.log2(n + 1)) + 1))
      }
    )))

  it("fails Fatal when only a combination of entries is rejected", () => {
    const verify = (subset: ReadonlyArray<Batch.Entry>) => subset.length >= 2 ? Effect.fail(rejected) : Effect.void
    const exit = Effect.runSyncExit(Isolation.isolate("batch 1..4", entries(4), rejected, verify))
    assert.isTrue(Exit.isFailure(exit))
    const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
    assert.isTrue(error !== undefined && error._tag === "Fail" && error.error.reason === "Fatal")
  })

  it("stops with the trial's failure when the sink fails for another reason than the data", () => {
    const down = new Errors.SinkError({ reason: "Transient", message: "connection reset" })
    const exit = Effect.runSyncExit(Isolation.isolate("batch", entries(8), rejected, () => Effect.fail(down)))
    assert.deepStrictEqual(exit, Exit.fail(down))
  })
})
