/**
 * `Sectors`: the fingerprint of an `/ingest` frame's ops (what makes a retry with the same key the same submission), and the standalone
 * routing (the local host, nothing of the cluster built), and the `Sector` entity's deduplication of a resend.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Op } from "@sectors/core"
import { TestHost } from "@sectors/core/testing"
import { Duration, Effect } from "effect"
import { Entity, ShardingConfig } from "effect/cluster"
import * as Cluster from "../src/Cluster.ts"
import * as Sectors from "../src/Sectors.ts"

const op = (data: Record<string, unknown>): Op.Op => ({ type: "set", entity: 1, component: "a", data: data as Op.Data })

describe("Sectors.fingerprintOps", () => {
  it.effect("is the same for the same ops whatever the order of their keys", () =>
    Effect.sync(() => {
      const a = Sectors.fingerprintOps([op({ x: 1, y: [1, { b: 2, a: 1 }] })])
      const b = Sectors.fingerprintOps([{ component: "a", data: { y: [1, { a: 1, b: 2 }], x: 1 }, entity: 1, type: "set" }])
      assert.strictEqual(a, b)
    }))

  it.effect("differs for other ops or another order of ops", () =>
    Effect.sync(() => {
      const base = Sectors.fingerprintOps([op({ x: 1 }), op({ x: 2 })])
      assert.notStrictEqual(Sectors.fingerprintOps([op({ x: 1 }), op({ x: 3 })]), base)
      assert.notStrictEqual(Sectors.fingerprintOps([op({ x: 2 }), op({ x: 1 })]), base)
    }))
})

describe("the Sector entity", () => {
  /** A client of the entity running in process over a host on the memory sink. */
  const client = Effect.gen(function*() {
    const make = yield* Entity.makeTestClient(Cluster.Sector, Cluster.layerBehaviour({ maxIdleTime: Duration.minutes(1) }))
    return yield* make("4")
  }).pipe(Effect.provide(ShardingConfig.layer()))

  const submit = (requestId: string, fingerprint: string) => ({
    ops: [op({ x: 1 })],
    ack: "accepted" as const,
    mailboxWaitMillis: 100,
    requestId,
    fingerprint
  })

  it.effect("applies a resent submission (same request id) once, answering it with the first one's seqs", () =>
    Effect.gen(function*() {
      const sector = yield* client
      const first = yield* sector.Submit(submit("r-1", "f"))
      const resent = yield* sector.Submit(submit("r-1", "f"))
      assert.deepStrictEqual([resent.firstSeq, resent.lastSeq, resent.replayed], [first.firstSeq, first.lastSeq, true])
      const next = yield* sector.Submit(submit("r-2", "f"))
      assert.strictEqual(next.firstSeq, first.lastSeq + 1)
      const reused = yield* Effect.flip(sector.Submit(submit("r-1", "other")))
      assert.strictEqual(reused._tag, "IdempotencyMismatch")
    }).pipe(Effect.scoped, Effect.provide(TestHost.layer())))
})
