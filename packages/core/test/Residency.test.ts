/**
 * A sector's lifetime in a host: activation, the residency cap, passivation and shutdown (`internal/residency`),
 * seen through `SectorHost` on the memory sink with fault injection and the TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Metric, Option } from "effect"
import { Metrics, SectorHost } from "../src/index.ts"
import { FaultSink, MemorySink } from "../src/testing.ts"
import { advance, hostLayer, policy, set } from "./support.ts"

const counter = (metric: Metric.Metric<number, unknown>) => Effect.map(Metric.value(metric), (state) => Number((state as { count: number }).count))

describe("sector lifecycle", () => {
  it.effect("does not keep a failed activation: the first request after the outage activates the sector", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      yield* faults.outage(Duration.hours(1))
      const refused = yield* Effect.forkChild(Effect.flip(host.submit(1, [set(1)])))
      yield* advance(1_000, 10)
      const error = yield* Fiber.join(refused)
      assert.strictEqual(error._tag, "SinkUnavailable")
      assert.strictEqual(error._tag === "SinkUnavailable" && error.reason, "the database is unavailable")
      assert.deepStrictEqual(host.residency().active, 0)
      yield* faults.reset
      const accepted = yield* host.submit(1, [set(1)])
      assert.strictEqual(accepted.firstSeq, 1)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("reads of sectors that are not resident neither activate, nor claim, nor create anything", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      for (let sector = 100; sector < 150; sector++) {
        assert.isTrue(Option.isNone(yield* host.get(sector, 1)))
        assert.strictEqual((yield* host.stats(sector)).epoch, 0)
        assert.strictEqual(yield* host.flush(sector), 0)
      }
      assert.deepStrictEqual(store.sectorIds(), [])
      assert.strictEqual(host.residency().active, 0)
      // a sector written earlier and passivated reads back without a new claim
      yield* host.submit(7, [set(1, "a", 3)])
      yield* host.flush(7)
      yield* advance(Duration.toMillis(Duration.minutes(1)) + 10, 1000)
      assert.strictEqual(host.residency().active, 0)
      const view = yield* host.get(7, 1)
      assert.deepStrictEqual(Option.map(view, (v) => v.components), Option.some({ a: { x: 3 } }))
      assert.strictEqual(store.sector(7)?.epoch, 1)
    }).pipe(Effect.provide(hostLayer({ passivateAfter: Duration.minutes(1) }))))

  it.effect("holds at most maxActiveSectors: the least recently used idle sector makes room", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      const evictions = yield* counter(Metrics.evictions)
      for (const sector of [1, 2, 3]) {
        yield* host.submit(sector, [set(1)])
        yield* host.flush(sector)
      }
      yield* host.submit(1, [set(2)]) // 1 is now the most recently used; 2 the least
      yield* host.flush(1)
      yield* host.submit(4, [set(1)])
      assert.deepStrictEqual((yield* host.list).map((s) => s.sectorId).sort(), [1, 3, 4])
      assert.deepStrictEqual(host.residency(), { active: 3, maxActiveSectors: 3 })
      assert.strictEqual((yield* counter(Metrics.evictions)) - evictions, 1)
      assert.strictEqual(store.sector(2)?.persistedSeq, 1)
    }).pipe(Effect.provide(hostLayer({ maxActiveSectors: 3 }))))

  it.effect("refuses a new sector with ResidencyFull at once when every resident sector holds unflushed ops", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const refusedBefore = yield* counter(Metric.withAttributes(Metrics.refused, { reason: "ResidencyFull" }))
      for (const sector of [1, 2]) yield* host.submit(sector, [set(1)])
      const error = yield* Effect.flip(host.submit(3, [set(1)]))
      assert.strictEqual(error._tag, "ResidencyFull")
      assert.strictEqual(
        (yield* counter(Metric.withAttributes(Metrics.refused, { reason: "ResidencyFull" }))) - refusedBefore,
        1
      )
      // once they are durable, room is made
      yield* host.flush(1)
      assert.strictEqual((yield* host.submit(3, [set(1)])).firstSeq, 1)
      assert.deepStrictEqual((yield* host.list).map((s) => s.sectorId).sort(), [2, 3])
    }).pipe(Effect.provide(hostLayer({ maxActiveSectors: 2, policy: policy({ minBatch: 100, maxBatch: 100, maxWait: 600_000 }) }))))

  it.effect("never passivates a sector with unflushed ops, however long the outage; it flushes when the sink returns", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1)])
      yield* faults.outage(Duration.minutes(10))
      yield* host.submit(1, [set(2), set(3)])
      yield* advance(Duration.toMillis(Duration.minutes(5)), 1000)
      assert.deepStrictEqual((yield* host.list).map((s) => [s.sectorId, s.pendingOps]), [[1, 3]])
      // still resident, not passivating: it answers at once
      const stats = yield* Effect.forkChild(host.stats(1))
      yield* advance(10)
      assert.strictEqual(Option.map(Option.fromUndefinedOr(stats.pollUnsafe()), Exit.isSuccess).pipe(Option.getOrElse(() => false)), true)
      assert.strictEqual((yield* Fiber.join(stats)).phase, "running")
      yield* faults.reset
      yield* advance(10_000, 100)
      assert.strictEqual(store.sector(1)?.persistedSeq, 3)
      yield* advance(Duration.toMillis(Duration.minutes(2)), 1000)
      assert.deepStrictEqual(yield* host.list, [])
    }).pipe(Effect.provide(hostLayer({ passivateAfter: Duration.minutes(1), shutdownTimeout: Duration.seconds(1) }))))

  it.effect("release flushes a sector with no deadline, through an outage, then drops it; the next write claims it anew", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1)])
      yield* faults.outage(Duration.minutes(10))
      yield* host.submit(1, [set(2), set(3)])
      const released = yield* Effect.forkChild(host.release(1))
      // far past shutdownTimeout: still flushing, nothing given up
      yield* advance(Duration.toMillis(Duration.minutes(5)), 1000)
      assert.isUndefined(released.pollUnsafe())
      assert.strictEqual(host.unflushed().ops, 3)
      yield* faults.reset
      yield* advance(10_000, 100)
      yield* Fiber.join(released)
      assert.strictEqual(store.sector(1)?.persistedSeq, 3)
      assert.strictEqual(host.residency().active, 0)
      // a release of a sector that is not here does nothing
      yield* host.release(1)
      yield* host.release(42)
      const accepted = yield* host.submit(1, [set(4)])
      assert.strictEqual(accepted.firstSeq, 4)
      assert.strictEqual(store.sector(1)?.epoch, 2)
    }).pipe(Effect.provide(hostLayer({ shutdownTimeout: Duration.seconds(1) }))))

  it.effect("a shutdown sees a sector still activating: the write is refused or flushed and reported", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* faults.outage(Duration.millis(100)) // the activation's load retries until then
      const write = yield* Effect.forkChild(Effect.exit(host.submit(1, [set(1)])))
      yield* Effect.yieldNow
      const shutdown = yield* Effect.forkChild(host.shutdown)
      yield* advance(2_000, 10)
      const [written, report] = [yield* Fiber.join(write), yield* Fiber.join(shutdown)]
      if (Exit.isSuccess(written)) {
        assert.strictEqual(report.flushed, 1)
        assert.strictEqual(store.sector(1)?.persistedSeq, 1)
      } else {
        assert.deepStrictEqual(Exit.isFailure(written) && written.cause.reasons.map((r) => r._tag === "Fail" && r.error._tag), ["ShuttingDown"])
        assert.strictEqual(report.unflushed, 0)
      }
      assert.strictEqual(report.sectors, 1)
    }).pipe(Effect.provide(hostLayer())))
})
