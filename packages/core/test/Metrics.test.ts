import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { Metrics, Sector, SectorHost } from "../src/index.ts"
import { advance, hostLayer, policy, set } from "./support.ts"

const count = (metric: Metric.Metric<number, Metric.CounterState<number>>) =>
  Effect.map(Metric.value(metric), (state) => state.count)

describe("Metrics", () => {
  it.effect("count ops received, persisted and collapsed, batches and their triggers, without sector labels", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const before = {
        received: yield* count(Metrics.opsReceived),
        persisted: yield* count(Metrics.opsPersisted),
        collapsed: yield* count(Metrics.opsCollapsed),
        batches: yield* count(Metrics.batches),
        minBatch: yield* count(Metric.withAttributes(Metrics.flushTriggers, { reason: "min_batch" })),
        maxWait: yield* count(Metric.withAttributes(Metrics.flushTriggers, { reason: "max_wait" }))
      }
      // five writes to one key: a min_batch batch of 5 ops and 1 row
      yield* host.submit(1, [set(1), set(1), set(1), set(1), set(1)])
      // two ops on another sector: a max_wait batch
      yield* host.submit(2, [set(1), set(2)])
      yield* advance(30)
      assert.strictEqual((yield* count(Metrics.opsReceived)) - before.received, 7)
      assert.strictEqual((yield* count(Metrics.opsPersisted)) - before.persisted, 7)
      assert.strictEqual((yield* count(Metrics.opsCollapsed)) - before.collapsed, 4)
      assert.strictEqual((yield* count(Metrics.batches)) - before.batches, 2)
      assert.strictEqual(
        (yield* count(Metric.withAttributes(Metrics.flushTriggers, { reason: "min_batch" }))) - before.minBatch,
        1
      )
      assert.strictEqual(
        (yield* count(Metric.withAttributes(Metrics.flushTriggers, { reason: "max_wait" }))) - before.maxWait,
        1
      )
      const snapshot = yield* Metric.snapshot
      for (const metric of snapshot.filter((m) => m.id.startsWith("sectors_"))) {
        assert.notProperty(metric.attributes ?? {}, "sector", metric.id)
        assert.notProperty(metric.attributes ?? {}, "sectorId", metric.id)
      }
    }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 5 }) }))))
})

describe("Metrics: active sectors", () => {
  it.effect("count a sector once when its stop is called concurrently (host shutdown racing passivation)", () =>
    Effect.gen(function*() {
      const gauge = Effect.map(Metric.value(Metrics.activeSectors), (state) => state.value)
      const before = yield* gauge
      yield* Effect.scoped(Effect.gen(function*() {
        const sector = yield* Sector.make(9)
        yield* sector.submit([set(1)])
        assert.strictEqual((yield* gauge) - before, 1)
        const [first, second] = yield* Effect.all([sector.stop, sector.drain, sector.stop], { concurrency: "unbounded" })
        assert.deepStrictEqual(first, second)
        assert.strictEqual((yield* gauge) - before, 0)
      }))
      assert.strictEqual((yield* gauge) - before, 0)
    }).pipe(Effect.provide(hostLayer())))
})
