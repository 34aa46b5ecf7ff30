/** `Stats` snapshots and their difference, measured around real sink writes. */
import { assert, layer } from "@effect/vitest"
import { SectorSink } from "@sectors/core"
import { SinkConformance } from "@sectors/core/testing"
import { Effect } from "effect"
import { Stats } from "../src/index.ts"
import { sinkLayer } from "./support.ts"

layer(sinkLayer(), { excludeTestServices: true })("Stats", (it) => {
  it.effect("measures statements and commits between two snapshots", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      assert.isTrue(yield* Stats.enable, "pg_stat_statements is preloaded by the embedded server")
      const { epoch } = yield* sink.load(424242)
      const before = yield* Stats.snapshot
      for (let i = 0; i < 5; i++) {
        yield* sink.persist(SinkConformance.batchOf(424242, epoch, [{ type: "set", entity: i, component: "a", data: { i } }], i + 1))
      }
      const delta = Stats.diff(before, yield* Stats.snapshot)
      // the first batch after the claim updates the sector row, the others are vouched for by the claim fence: two
      // statement texts, so two entries
      const upserts = delta.statements.filter((s) => s.query.includes("INSERT INTO entity_components"))
      assert.deepStrictEqual(upserts.map((s) => s.calls).sort(), [1, 4])
      assert.closeTo(delta.statements.reduce((sum, s) => sum + s.share, 0), 1, 1e-9)
      assert.isAtLeast(delta.database.xids, 5, "each batch is one write transaction")
      assert.isAtMost(delta.database.xids, 8)
      assert.closeTo(Stats.share(delta, /INSERT INTO entity_components/), upserts[0]!.share + upserts[1]!.share, 1e-9)
    }))
})
