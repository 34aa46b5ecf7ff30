/**
 * `Sectors`: the fingerprint a forwarded submission carries (what makes a resend the same request), and the standalone
 * routing (the local host, nothing of the cluster built).
 */
import { assert, describe, it } from "@effect/vitest"
import type { Op } from "@sectors/core"
import { Effect } from "effect"
import * as Sectors from "../src/Sectors.ts"

const op = (data: Record<string, unknown>): Op.Op => ({ type: "set", entity: 1, component: "a", data: data as Op.Data })

describe("Sectors.fingerprint", () => {
  it.effect("is the same for the same ops and ack whatever the order of their keys", () =>
    Effect.sync(() => {
      const a = Sectors.fingerprint([op({ x: 1, y: [1, { b: 2, a: 1 }] })], "accepted")
      const b = Sectors.fingerprint([{ component: "a", data: { y: [1, { a: 1, b: 2 }], x: 1 }, entity: 1, type: "set" }], "accepted")
      assert.strictEqual(a, b)
    }))

  it.effect("differs for other ops, another order of ops, or another ack", () =>
    Effect.sync(() => {
      const base = Sectors.fingerprint([op({ x: 1 }), op({ x: 2 })], "accepted")
      assert.notStrictEqual(Sectors.fingerprint([op({ x: 1 }), op({ x: 3 })], "accepted"), base)
      assert.notStrictEqual(Sectors.fingerprint([op({ x: 2 }), op({ x: 1 })], "accepted"), base)
      assert.notStrictEqual(Sectors.fingerprint([op({ x: 1 }), op({ x: 2 })], "durable"), base)
    }))
})
