/**
 * `Cluster`: the `Sector` entity's protocol carries everything an answer says, so an answer forwarded from another
 * host is the answer the owner would give over HTTP. (Sharding itself runs in the multi-process tests of
 * `test/cluster/`.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Cluster from "../src/Cluster.ts"

describe("Cluster.Submit", () => {
  it.effect("carries `replayed` across the wire: a resend recognised by its key says so from any host", () =>
    Effect.gen(function*() {
      const schema = Schema.toCodecJson(Cluster.Submit.successSchema)
      const answer = { sectorId: 1, accepted: 2, firstSeq: 3, lastSeq: 4, persisted: false, replayed: true }
      const sent = yield* Schema.encodeEffect(schema)(answer)
      assert.deepStrictEqual(yield* Schema.decodeUnknownEffect(schema)(JSON.parse(JSON.stringify(sent))), answer)
      const fresh = { sectorId: 1, accepted: 2, firstSeq: 3, lastSeq: 4, persisted: true }
      assert.deepStrictEqual(yield* Schema.decodeUnknownEffect(schema)(yield* Schema.encodeEffect(schema)(fresh)), fresh)
    }))
})
