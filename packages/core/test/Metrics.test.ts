import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Fiber, Layer, Metric } from "effect"
import { TestClock } from "effect/testing"
import { BatchPolicy, Metrics, Sector, SectorHost } from "../src/index.ts"
import { FaultSink } from "../src/testing.ts"
import { advance, hostLayer, policy, set } from "./support.ts"

const count = (metric: Metric.Metric<number, Metric.CounterState<number>>) =>
  Effect.map(Metric.value(metric), (state) => state.count)

describe("Metrics", () => {
  it.effect("time each batch from its first op being accepted to its being durable (its slowest op's op→durable)", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const before = yield* Metric.value(Metrics.durableSeconds)
      yield* host.submit(1, [set(1)]) // t = 0: the batch's first op
      yield* advance(10)
      yield* host.submit(1, [set(2)]) // t = 10 ms
      yield* advance(20) // the batch goes at its 25 ms deadline and commits at once (memory sink)
      const after = yield* Metric.value(Metrics.durableSeconds)
      assert.strictEqual(after.count - before.count, 1)
      assert.strictEqual(after.sum - before.sum, 0.025) // from the first op, not the last (10 ms later)
    }).pipe(Effect.provide(hostLayer())))

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

describe("Metrics kept as tallies", () => {
  it.effect("count ops received and gauge pending keys and buffered bytes over every host of a registry, from where the series stood", () =>
    Effect.gen(function*() {
      // a registry of the test's own, whose received counter already stood at 5
      const registry: Metric.MetricRegistry = new Map()
      const inRegistry = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.provideService(effect, Metric.MetricRegistry, registry)
      yield* inRegistry(Metric.update(Metrics.opsReceived, 5))
      const hosts = yield* inRegistry(Effect.forEach([1, 2], () => Layer.build(hostLayer())))
      const [a, b] = hosts.map((context) => Context.get(context, SectorHost.SectorHost))
      for (const context of hosts) {
        const faults = Context.get(context, FaultSink.Faults)
        yield* faults.slow(Duration.seconds(1))
        // however the test ends, the hosts can flush when they shut down (the TestClock stands still otherwise)
        yield* Effect.addFinalizer(() => Effect.andThen(faults.reset, TestClock.adjust(Duration.seconds(2))))
      }
      const read = inRegistry(Effect.all({
        received: Effect.map(Metric.value(Metrics.opsReceived), (state) => state.count),
        keys: Effect.map(Metric.value(Metrics.pendingKeys), (state) => state.value),
        bytes: Effect.map(Metric.value(Metrics.bufferedBytes), (state) => state.value)
      }))

      yield* a!.submit(1, [set(1), set(2), set(2)])
      yield* b!.submit(1, [set(3)])
      const held = a!.buffer().bufferedBytes + b!.buffer().bufferedBytes
      assert.isAbove(held, 0)
      assert.deepStrictEqual(yield* read, { received: 9, keys: 3, bytes: held })
      yield* advance(30) // both batches taken at maxWait: their keys are no longer pending, their bytes held until durable
      assert.deepStrictEqual(yield* read, { received: 9, keys: 0, bytes: held })
      yield* advance(1_000, 10)
      assert.deepStrictEqual(yield* read, { received: 9, keys: 0, bytes: 0 })
    }).pipe(Effect.scoped))
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

/** The series of the current registry, as `name{label="value"}` → its snapshot. */
const registered = Effect.map(Metric.snapshot, (snapshot) =>
  new Map(snapshot.map((s) => [
    `${s.id}${
      Object.keys(s.attributes ?? {}).length === 0
        ? ""
        : `{${Object.entries(s.attributes!).map(([k, v]) => `${k}="${v}"`).join(",")}}`
    }`,
    s
  ])))

/** A registry of its own, so that the series a test sees are the ones its host made. */
const freshRegistry = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provideService(effect, Metric.MetricRegistry, new Map())

describe("Metrics from zero", () => {
  it.effect("a host that has not written anything exports every series, every labelled counter with every known label", () =>
    freshRegistry(
      Effect.gen(function*() {
        yield* SectorHost.SectorHost
        const series = yield* registered
        const expected = [
          ...BatchPolicy.triggers.map((t) => `sectors_flush_triggers_total{reason="${t}"}`),
          ...["Transient", "Rejected", "Fenced", "Fatal", "Unavailable"].map((r) =>
            `sectors_persist_failures_total{reason="${r}"}`
          ),
          ...["MailboxFull", "BacklogFull", "BufferFull", "ShuttingDown", "ResidencyFull"].map((r) =>
            `sectors_submissions_refused_total{reason="${r}"}`
          ),
          `sectors_shutdowns_total{outcome="success"}`,
          `sectors_shutdowns_total{outcome="failure"}`,
          `sectors_ops_lost_total{reason="shutdown"}`,
          `sectors_ops_lost_total{reason="fenced"}`,
          "sectors_persist_retries_total",
          "sectors_dead_letters_total",
          "sectors_pending_keys_limit_hits_total",
          "sectors_batch_ops",
          "sectors_shutdown_duration_seconds"
        ]
        for (const name of expected) {
          const found = series.get(name)
          assert.isDefined(found, `${name} is not exported`)
          if (found!.type === "Counter") assert.strictEqual((found!.state as Metric.CounterState<number>).count, 0, name)
        }
      }).pipe(Effect.provide(hostLayer()))
    ))

  it.effect("Metrics.series holds every metric the module exports", () =>
    Effect.sync(() => {
      const inSeries = new Set(Metrics.series.map((metric) => metric.id))
      const exported = Object.values(Metrics as Record<string, unknown>).filter(Metric.isMetric).map((metric) => metric.id)
      assert.isAbove(exported.length, 30)
      for (const id of exported) assert.isTrue(inSeries.has(id), `${id} is not in Metrics.series`)
    }))
})

describe("Metrics: safety limits and losses", () => {
  it.effect("count a submission that finds its sector at maxPendingKeys", () =>
    freshRegistry(
      Effect.gen(function*() {
        const host = yield* SectorHost.SectorHost
        const faults = yield* FaultSink.Faults
        yield* faults.slow(Duration.seconds(1)) // a batch in flight stays there
        yield* host.submit(1, [set(1), set(2), set(3)]) // at maxPendingKeys: out at once
        yield* advance(1)
        yield* host.submit(1, [set(4), set(5), set(6)]) // at maxPendingKeys again, a batch in flight
        assert.strictEqual(yield* count(Metrics.pendingKeysLimitHits), 0)
        const refused = yield* Effect.forkChild(Effect.flip(host.submit(1, [set(7)])))
        yield* advance(100)
        assert.strictEqual((yield* Fiber.join(refused))._tag, "BacklogFull")
        assert.strictEqual(yield* count(Metrics.pendingKeysLimitHits), 1)
        assert.strictEqual(yield* count(Metrics.refusedBy.BacklogFull), 1)
        yield* faults.reset
        yield* advance(2_000, 10)
      }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 100, maxBatch: 100, maxWait: 600_000, maxPendingKeys: 3 }) })))
    ))

  it.effect("count a shutdown that flushed everything as a success, nothing lost", () =>
    freshRegistry(
      Effect.gen(function*() {
        const host = yield* SectorHost.SectorHost
        yield* host.submit(1, [set(1), set(2)])
        yield* host.shutdown
        assert.deepStrictEqual(
          [
            yield* count(Metrics.shutdownsBy.success),
            yield* count(Metrics.shutdownsBy.failure),
            yield* count(Metrics.opsLostBy.shutdown)
          ],
          [1, 0, 0]
        )
      }).pipe(Effect.provide(hostLayer()))
    ))

  it.effect("count a shutdown that left ops unflushed as a failure, and those ops as lost", () =>
    freshRegistry(
      Effect.gen(function*() {
        const host = yield* SectorHost.SectorHost
        const faults = yield* FaultSink.Faults
        yield* host.submit(1, [set(1)])
        yield* host.flush(1)
        yield* faults.outage(Duration.hours(1))
        yield* host.submit(1, [set(2), set(3)])
        const shutdown = yield* Effect.forkChild(host.shutdown)
        yield* advance(2_100, 50)
        assert.strictEqual((yield* Fiber.join(shutdown)).unflushed, 2)
        assert.deepStrictEqual(
          [
            yield* count(Metrics.shutdownsBy.success),
            yield* count(Metrics.shutdownsBy.failure),
            yield* count(Metrics.opsLostBy.shutdown)
          ],
          [0, 1, 2]
        )
      }).pipe(Effect.provide(hostLayer({ shutdownTimeout: Duration.seconds(2) })))
    ))
})
