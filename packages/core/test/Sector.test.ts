import { assert, describe, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Layer, Metric, Option, Tracer } from "effect"
import { Metrics, SectorHost, SectorSink, SectorsConfig, SectorState } from "../src/index.ts"
import { CountingClock, FaultSink, MemorySink, SinkConformance } from "../src/testing.ts"
import { advance, hostLayer, policy, set, unreadable } from "./support.ts"

const commitsOf = (store: MemorySink.MemorySink["Service"], sectorId: number) =>
  store.commits.filter((c) => c.sectorId === sectorId).map((c) => [c.fromSeq, c.toSeq, c.at])

describe("Sector batching", () => {
  it.effect("flushes a partial batch when maxWait elapses, not before", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1), set(2)])
      yield* advance(24)
      assert.deepStrictEqual(commitsOf(store, 1), [])
      yield* advance(1)
      assert.deepStrictEqual(commitsOf(store, 1), [[1, 2, 25]])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("flushes at once when minBatch ops are pending", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1), set(2), set(3), set(4), set(5)])
      yield* Effect.yieldNow
      assert.deepStrictEqual(commitsOf(store, 1), [[1, 5, 0]])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("sends a backlog beyond maxBatch as back-to-back batches of at most maxBatch ops", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, Array.from({ length: 23 }, (_, i) => set(i)))
      yield* advance(1)
      assert.deepStrictEqual(commitsOf(store, 1), [[1, 10, 0], [11, 20, 0], [21, 23, 0]])
    }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 1 }) }))))

  it.effect("keeps accumulating while a persist is in flight and sends the rest as one batch", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      const faults = yield* FaultSink.Faults
      yield* faults.slow(100)
      yield* host.submit(1, [set(1)])
      yield* Effect.yieldNow
      for (let i = 0; i < 7; i++) {
        yield* advance(10)
        yield* host.submit(1, [set(10 + i)])
      }
      yield* advance(200)
      // the immediate profile (minBatch 1) would have made 8 transactions; one in flight gathers the other 7
      assert.deepStrictEqual(commitsOf(store, 1).map(([from, to]) => [from, to]), [[1, 1], [2, 8]])
    }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 1 }) }))))

  it.effect("acknowledges durable submissions once their batch committed", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const fiber = yield* Effect.forkChild(host.submit(1, [set(1)], { ack: "durable" }))
      yield* advance(10)
      assert.isUndefined(fiber.pollUnsafe())
      yield* advance(15)
      const result = yield* Fiber.join(fiber)
      assert.deepStrictEqual(result, { sectorId: 1, accepted: 1, firstSeq: 1, lastSeq: 1, persisted: true })
    }).pipe(Effect.provide(hostLayer())))

  it.effect("times out a durable wait with DurableTimeout while the ops stay accepted", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const fiber = yield* Effect.forkChild(host.submit(1, [set(1)], { ack: "durable", durableTimeout: 10 }))
      yield* advance(10)
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "DurableTimeout")
      const stats = yield* host.stats(1)
      assert.strictEqual(stats.lastSeq, 1)
      yield* advance(20)
      assert.strictEqual((yield* host.stats(1)).persistedSeq, 1)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("durable waits with a timeout wait on one timer for the host, not a sleep and a race each", () =>
    CountingClock.withCountingClock((clock) =>
      Effect.gen(function*() {
        const host = yield* SectorHost.SectorHost
        yield* host.submit(1, [set(0)])
        yield* advance(60) // durable, and the run ended: nothing armed
        clock.reset()
        const fibers = []
        for (let i = 1; i <= 50; i++) {
          fibers.push(yield* Effect.forkChild(host.submit(1, [set(i)], { ack: "durable", durableTimeout: 1_000 })))
        }
        yield* advance(30)
        for (const fiber of fibers) assert.isTrue((yield* Fiber.join(fiber)).persisted)
        // the batch's deadline and the durable waits' one timer (the run's idle wait shares the next grid point)
        assert.isAtMost(clock.counts().started, 3)
      }).pipe(Effect.provide(hostLayer()))
    ))

  it.effect("flush() persists at once and returns the watermark", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1), set(2)])
      const watermark = yield* host.flush(1)
      assert.strictEqual(watermark, 2)
      const stats = yield* host.stats(1)
      assert.strictEqual(stats.persistedSeq, 2)
      assert.strictEqual(stats.counters.timerWakeups, 0)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("an op accepted while the flusher lingers does not wake it: the timer it waits on flushes it", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const wakeups = Effect.map(Metric.value(Metrics.flusherWakeups), (state) => state.count)
      yield* host.submit(1, [set(1)])
      yield* advance(30) // the batch went out at 25; the run lingers until the grid point at 50
      const before = yield* wakeups
      yield* host.submit(1, [set(2)]) // due at 50, where the flusher's timer falls anyway
      yield* advance(15)
      assert.strictEqual(yield* wakeups, before) // 45: not woken for it
      assert.strictEqual((yield* host.stats(1)).persistedSeq, 1)
      yield* advance(10)
      assert.strictEqual((yield* host.stats(1)).persistedSeq, 2) // flushed at 50, by the timer
      assert.strictEqual((yield* wakeups) - before, 1)
      // work that cannot wait for the grid point does wake it: minBatch ops (5), at 55, lingering until 75
      yield* host.submit(1, [set(3), set(4), set(5), set(6), set(7)])
      yield* advance(1)
      assert.strictEqual((yield* host.stats(1)).persistedSeq, 7)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("runs no fiber while idle: a submission starts them, and they end at the grid point after everything is durable", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)])
      assert.isTrue((yield* host.stats(1)).awake) // one op pending, waiting for maxWait
      yield* advance(30) // the batch went out at 25; idle since, the run lingers until the grid point at 50
      const lingering = yield* host.stats(1)
      assert.deepStrictEqual([lingering.persistedSeq, lingering.awake], [1, true])
      yield* advance(20)
      const asleep = yield* host.stats(1)
      assert.isFalse(asleep.awake) // 50: asleep
      assert.strictEqual(asleep.counters.timerWakeups, 2) // the batch's deadline at 25, the end of the wait at 50
      // woken again by the next submission, asleep again at the grid point after it is durable
      yield* host.submit(1, [set(2), set(3)])
      assert.isTrue((yield* host.stats(1)).awake)
      assert.strictEqual(yield* host.flush(1), 3)
      yield* Effect.yieldNow
      assert.isTrue((yield* host.stats(1)).awake)
      yield* advance(25)
      const again = yield* host.stats(1)
      assert.deepStrictEqual([again.persistedSeq, again.awake, again.counters.batches], [3, false, 2])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("keeps its run from batch to batch while written to: work before the grid point finds it awake", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      // one op every 20 ms: each batch goes out at a grid point, and the next op arrives before the one after it
      for (let i = 1; i <= 10; i++) {
        yield* host.submit(1, [set(i)])
        yield* advance(20)
        assert.isTrue((yield* host.stats(1)).awake)
      }
      yield* advance(60)
      const idle = yield* host.stats(1)
      assert.deepStrictEqual([idle.persistedSeq, idle.awake], [10, false])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("under a zero maxWait (the immediate profile) ends its run as soon as everything is durable", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)])
      yield* advance(1)
      const idle = yield* host.stats(1)
      assert.deepStrictEqual([idle.persistedSeq, idle.awake], [1, false])
    }).pipe(Effect.provide(hostLayer({ policy: policy({ maxWait: 0 }) }))))

  it.effect("arms no timer while idle: zero wakeups for an hour", () =>
    CountingClock.withCountingClock((clock) =>
      Effect.gen(function*() {
        const host = yield* SectorHost.SectorHost
        for (let sector = 0; sector < 50; sector++) yield* host.submit(sector, [set(1), set(2)])
        yield* advance(30)
        for (let sector = 0; sector < 50; sector++) assert.strictEqual((yield* host.stats(sector)).persistedSeq, 2)
        // the runs linger until the grid point after their batch (one timer for all of them), then sleep
        clock.reset()
        yield* advance(20)
        assert.deepStrictEqual(clock.counts(), { started: 0, fired: 1 })
        for (let sector = 0; sector < 50; sector++) assert.isFalse((yield* host.stats(sector)).awake)
        clock.reset()
        yield* advance(Duration.toMillis(Duration.hours(1)), 60_000)
        assert.deepStrictEqual(clock.counts(), { started: 0, fired: 0 })
      }).pipe(Effect.provide(hostLayer()))
    ))

  it.effect("waits for a deadline on one timer for the host, not one per sector: sectors due together flush together", () =>
    CountingClock.withCountingClock((clock) =>
      Effect.gen(function*() {
        const host = yield* SectorHost.SectorHost
        const store = yield* MemorySink.MemorySink
        // 50 sectors' first ops arrive over the whole grid window: every one of them falls due at 25
        for (let sector = 0; sector < 50; sector++) {
          yield* host.submit(sector, [set(1)])
          if (sector % 2 === 1 && sector < 49) yield* advance(1)
        }
        assert.deepStrictEqual(store.commits, []) // 24 ms
        yield* advance(1)
        // the deadline's timer, and the one the sectors, idle again, linger on until the next grid point
        assert.deepStrictEqual(clock.counts(), { started: 2, fired: 1 })
        assert.deepStrictEqual(new Set(store.commits.map((c) => c.at)), new Set([25]))
        assert.strictEqual(store.commits.length, 50)
      }).pipe(Effect.provide(hostLayer()))
    ))

  it.effect("passivates idle sectors with one timer for the host, not one per sector", () =>
    CountingClock.withCountingClock((clock) =>
      Effect.gen(function*() {
        const host = yield* SectorHost.SectorHost
        for (let sector = 0; sector < 50; sector++) yield* host.submit(sector, [set(1), set(2)])
        yield* advance(50) // durable at 25, asleep at 50
        clock.reset()
        yield* advance(Duration.toMillis(Duration.minutes(2)), 1000)
        assert.deepStrictEqual(yield* host.list, [])
        assert.strictEqual(clock.counts().fired, 1) // the sweep, armed when the first sector was let go
      }).pipe(Effect.provide(hostLayer({ passivateAfter: Duration.minutes(1) })))
    ))
})

/** "accepted", or the tag of the error a submission failed with. */
const outcome = <A>(exit: Exit.Exit<A, { readonly _tag: string }>): string =>
  Exit.isSuccess(exit) ? "accepted" : Cause.findErrorOption(exit.cause).pipe(Option.map((e) => e._tag), Option.getOrElse(() => "defect"))

/**
 * Sector 1, activated with one op, dies persisting it and reloads while the sink is out for `millis`: until then it
 * cannot take submissions itself.
 */
const reloadingInOutage = (millis: number) =>
  Effect.gen(function*() {
    const host = yield* SectorHost.SectorHost
    const faults = yield* FaultSink.Faults
    yield* host.submit(1, [set(0)])
    yield* faults.dieNext(1)
    yield* advance(25) // the batch goes out at maxWait and dies
    yield* faults.outage(millis)
    yield* advance(1)
    assert.strictEqual((yield* host.stats(1)).counters.restarts, 1)
  })

describe("Sector backpressure and failures", () => {
  it.effect("at maxPendingKeys a submission waits at most mailboxWait for room, then BacklogFull: never left hanging", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      yield* faults.slow(Duration.seconds(1)) // a batch in flight stays there for a second
      yield* host.submit(1, [set(1), set(2), set(3)]) // at maxPendingKeys: the batch goes out at once
      yield* advance(1)
      yield* host.submit(1, [set(4), set(5), set(6)]) // room again; full again, with a batch in flight
      const refused = yield* Effect.forkChild(Effect.flip(host.submit(1, [set(7)])))
      yield* advance(99)
      assert.isUndefined(refused.pollUnsafe())
      yield* advance(1)
      assert.isDefined(refused.pollUnsafe(), "the submission was left waiting past mailboxWait")
      assert.strictEqual((yield* Fiber.join(refused))._tag, "BacklogFull")
      assert.deepStrictEqual([(yield* host.stats(1)).pendingKeys, (yield* host.stats(1)).mailboxDepth], [3, 0])
      // a submission waiting for room gets it when the next batch is taken (the one in flight lands at 1 s)
      yield* advance(850, 10)
      const waiting = yield* Effect.forkChild(host.submit(1, [set(7)]), { startImmediately: true })
      yield* advance(100, 10)
      assert.strictEqual((yield* Fiber.join(waiting)).firstSeq, 7)
      yield* faults.reset
      yield* advance(1_000, 10) // the slow batch in flight lands: the host's shutdown has nothing slow to wait for
    }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 100, maxBatch: 100, maxWait: 600_000, maxPendingKeys: 3 }) }))))

  it.effect("submissions waiting for room: the one that finds it fills it, the others wait on within mailboxWait", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      yield* faults.slow(Duration.millis(40)) // each batch is in flight for 40 ms
      yield* host.submit(1, [set(1), set(2), set(3)]) // at maxPendingKeys: out at once
      yield* advance(1)
      yield* host.submit(1, [set(4), set(5), set(6)]) // full again, a batch in flight
      const first = yield* Effect.forkChild(host.submit(1, [set(7), set(8), set(9)]), { startImmediately: true })
      const second = yield* Effect.forkChild(host.submit(1, [set(10)]), { startImmediately: true })
      yield* advance(45) // the first batch lands, 4..6 go out: `first` fills the room, `second` waits on
      assert.strictEqual((yield* Fiber.join(first)).firstSeq, 7)
      assert.isUndefined(second.pollUnsafe())
      yield* advance(45) // 7..9 go out: room for `second`, within its 100 ms
      assert.strictEqual((yield* Fiber.join(second)).firstSeq, 10)
      yield* faults.reset
      yield* advance(100)
    }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 100, maxBatch: 100, maxWait: 600_000, maxPendingKeys: 3 }) }))))

  it.effect("a sector at maxPendingKeys sends its batch at once instead of at its deadline", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1), set(2)])
      yield* advance(10)
      assert.strictEqual(store.sector(1)?.persistedSeq ?? 0, 0, "below maxPendingKeys it waits for the deadline")
      yield* host.submit(1, [set(3)])
      yield* advance(1)
      assert.strictEqual(store.sector(1)?.persistedSeq, 3, "at maxPendingKeys it does not wait for the deadline")
    }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 100, maxBatch: 100, maxWait: 600_000, maxPendingKeys: 3 }) }))))

  it.effect("a durable submission's onAccepted hears its seqs when they are given, before it is durable", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const heard: Array<[number, number]> = []
      const durable = yield* Effect.forkChild(
        host.submit(1, [set(1), set(2)], { ack: "durable", onAccepted: (a) => void heard.push([a.firstSeq, a.lastSeq]) }),
        { startImmediately: true }
      )
      assert.deepStrictEqual(heard, [[1, 2]])
      assert.isUndefined(durable.pollUnsafe())
      yield* advance(30)
      assert.deepStrictEqual((yield* Fiber.join(durable)).persisted, true)
      assert.deepStrictEqual(heard, [[1, 2]], "heard once")
      // not for an accepted ack (its answer is the news), nor for a submission refused before it had seqs
      yield* host.submit(1, [set(3)], { onAccepted: () => void heard.push([0, 0]) })
      yield* host.submit(1, [], { ack: "durable", onAccepted: () => void heard.push([0, 0]) }).pipe(Effect.flip)
      assert.deepStrictEqual(heard, [[1, 2]])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("a free sector accepts in the submitter's fiber: seqs in call order, the mailbox never used", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(0)]) // activated
      const fibers = yield* Effect.forEach(
        [1, 2, 3, 4, 5, 6],
        (i) => Effect.forkChild(host.submit(1, [set(i)]), { startImmediately: true })
      )
      // every one has its seqs before this fiber yields: none waited for the sector's intake
      assert.deepStrictEqual(fibers.map((fiber) => fiber.pollUnsafe() !== undefined), [true, true, true, true, true, true])
      const accepted = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(accepted.map((a) => a.firstSeq), [2, 3, 4, 5, 6, 7])
      assert.strictEqual((yield* host.stats(1)).mailboxDepth, 0)
    }).pipe(Effect.provide(hostLayer({ mailboxCapacity: 1 }))))

  it.effect("while it reloads after a defect a sector takes submissions into its mailbox, in order; MailboxFull past it", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* reloadingInOutage(500)
      const fibers = yield* Effect.forEach(
        [1, 2, 3, 4],
        (i) => Effect.forkChild(Effect.exit(host.submit(1, [set(i)])), { startImmediately: true })
      )
      assert.strictEqual((yield* host.stats(1)).mailboxDepth, 2)
      assert.isUndefined(host.trySubmit(1, [set(5)]), "nothing jumps the mailbox")
      yield* advance(2_000, 10)
      const outcomes = (yield* Effect.forEach(fibers, Fiber.join)).map(outcome)
      assert.deepStrictEqual(outcomes, ["accepted", "accepted", "MailboxFull", "MailboxFull"])
      const seqs = (yield* Effect.forEach(fibers.slice(0, 2), Fiber.join)).map((exit) =>
        Exit.isSuccess(exit) ? exit.value.firstSeq : -1
      )
      assert.deepStrictEqual(seqs, [2, 3])
      assert.strictEqual(yield* host.flush(1), 3)
    }).pipe(Effect.provide(hostLayer({ mailboxCapacity: 2 }))))

  it.effect("retries transient failures and loses nothing", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* faults.failNext(2)
      yield* host.submit(1, [set(1, "a", 1), set(1, "b", 2)])
      yield* advance(200, 5)
      assert.strictEqual(store.sector(1)?.persistedSeq, 2)
      assert.strictEqual(store.rows(1).components.length, 2)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("keeps accepting while the database is down: the circuit paces persists, never admission", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1)])
      yield* faults.outage(5_000)
      yield* host.submit(1, [set(2)])
      yield* advance(1500, 10)
      assert.strictEqual(host.circuit()._tag, "Open")
      assert.strictEqual((yield* host.submit(1, [set(3)])).firstSeq, 3)
      const during = yield* host.stats(1)
      assert.strictEqual(during.pendingOps + during.inFlightOps, 3)
      yield* advance(10_000, 50)
      assert.strictEqual(host.circuit()._tag, "Closed")
      assert.strictEqual(store.sector(1)?.persistedSeq, 3)
      assert.strictEqual(host.buffer().bufferedBytes, 0)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("refuses with BufferFull at once when the host's budget cannot take a submission, and frees it on commit", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      for (let sector = 1; sector <= 4; sector++) yield* host.submit(sector, [set(0)])
      yield* host.flush(4)
      yield* faults.outage(5_000)
      const accepted = new Map<number, number>()
      let refused = 0
      for (let i = 0; i < 400; i++) {
        const sector = 1 + (i % 4)
        const exit = yield* Effect.exit(host.submit(sector, [set(i, "c", i)]))
        if (Exit.isSuccess(exit)) accepted.set(sector, exit.value.lastSeq)
        else {
          assert.strictEqual(Cause.findErrorOption(exit.cause).pipe(Option.map((e) => e._tag), Option.getOrUndefined), "BufferFull")
          refused++
        }
        assert.isAtMost(host.buffer().bufferedBytes, 16 * 1024)
      }
      assert.isAbove(refused, 0)
      assert.isTrue(host.buffer().full)
      yield* advance(12_000, 50)
      for (const [sector, lastSeq] of accepted) assert.strictEqual(store.sector(sector)?.persistedSeq, lastSeq)
      assert.strictEqual(host.buffer().bufferedBytes, 0)
      assert.strictEqual((yield* host.submit(1, [set(1)])).accepted, 1)
    }).pipe(Effect.provide(hostLayer({ maxBufferedBytes: 16 * 1024 }))))

  it.effect("re-sends a batch whose commit was acknowledged lost together with newer ops, without resurrecting rows", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      const ops = [{ type: "delete" as const, entity: 1 }, set(1, "c", 1), { type: "remove" as const, entity: 1, component: "c" }]
      yield* faults.slow(10)
      yield* faults.failNext(1, { ambiguous: true }) // commits, then reports a lost connection…
      yield* faults.failNext(8) // …and the retries keep failing past the retry deadline: back under newer ops
      yield* host.submit(1, ops.slice(0, 2))
      yield* advance(30) // the batch is in flight from 25 to 35
      yield* host.submit(1, ops.slice(2))
      yield* advance(10_000, 5)
      assert.strictEqual((yield* faults.stats).injected, 9)
      assert.strictEqual(store.sector(1)?.persistedSeq, 3)
      assert.deepStrictEqual(store.rows(1), SectorState.toRows(SectorState.fold(ops)))
      assert.deepStrictEqual(store.appliedTwice(), [])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("dead-letters a poison op and commits the rest of its batch; memory shows the durable truth", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(9, "hp", 1)])
      yield* host.flush(1)
      yield* faults.poison((entry) => entry._tag === "Upsert" && entry.data["x"] === 666)
      yield* host.submit(1, [set(1), set(2), set(9, "hp", 666), set(3), set(4)])
      yield* advance(1)
      assert.strictEqual(store.sector(1)?.persistedSeq, 6)
      assert.deepStrictEqual(store.deadLetters.map((l) => [l.seq, l.code]), [[4, "22P05"]])
      assert.deepStrictEqual(store.rows(1).components.map((r) => r.entity), [1, 2, 3, 4, 9])
      const nine = yield* host.get(1, 9)
      assert.deepStrictEqual(Option.map(nine, (v) => v.components["hp"]), Option.some({ x: 1 }))
      assert.strictEqual((yield* host.stats(1)).counters.deadLetters, 1)
      const letters = yield* host.deadLetters(1)
      assert.deepStrictEqual(letters.map((l) => [l.seq, l.entry._tag, l.error]), [[4, "Upsert", "injected: entry rejected"]])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("dead-letters a poison op exactly once even when the persist after isolation fails", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* faults.poison((entry) => entry._tag === "Upsert" && entry.data["x"] === 666)
      // the first persist is rejected (poison); the persist of the rest after isolation fails once
      yield* faults.failNext(1, { reason: "Fatal" })
      yield* host.submit(1, [set(1), set(2), set(9, "hp", 666), set(3), set(4)])
      yield* advance(200)
      assert.strictEqual(store.sector(1)?.persistedSeq, 5)
      assert.deepStrictEqual(store.deadLetters.map((l) => l.seq), [3])
      assert.strictEqual((yield* host.stats(1)).counters.deadLetters, 1)
      assert.isTrue(Option.isNone(yield* host.get(1, 9)))
    }).pipe(Effect.provide(hostLayer())))

  it.effect("restarts a sector that died of a defect and loses no accepted op", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      const store = yield* MemorySink.MemorySink
      yield* faults.dieNext(1)
      yield* host.submit(1, [set(1, "a", 1), set(2, "a", 2)])
      yield* advance(30)
      // the sector is waiting to restart: the submission is taken once it is back
      const later = yield* Effect.forkChild(host.submit(1, [set(3, "a", 3)]))
      yield* advance(500, 5)
      assert.strictEqual((yield* Fiber.join(later)).firstSeq, 3)
      const stats = yield* host.stats(1)
      assert.strictEqual(stats.counters.restarts, 1)
      assert.strictEqual(store.sector(1)?.persistedSeq, 3)
      assert.deepStrictEqual(
        store.rows(1),
        SectorState.toRows(SectorState.fold([set(1, "a", 1), set(2, "a", 2), set(3, "a", 3)]))
      )
    }).pipe(Effect.provide(hostLayer())))

  it.effect("an op the state cannot apply fails its submission as a defect, restarts the sector, and loses nothing accepted", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1, "a", 1)])
      // ops are trusted past `Op.decodeOps`: one whose entity cannot be read dies as the sector applies it
      const exit = yield* Effect.exit(host.submit(1, [set(2, "a", 2), unreadable("a")]))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      // the sector comes back: the next submission is taken, and everything accepted is persisted
      const later = yield* Effect.forkChild(host.submit(1, [set(3, "a", 3)]))
      yield* advance(500, 5)
      const accepted = yield* Fiber.join(later)
      assert.strictEqual((yield* host.stats(1)).counters.restarts, 1)
      assert.strictEqual(yield* host.flush(1), accepted.lastSeq)
      assert.deepStrictEqual(
        store.rows(1).components.map((row) => [row.entity, row.data["x"]]),
        [[1, 1], [2, 2], [3, 3]]
      )
    }).pipe(Effect.provide(hostLayer())))

  it.effect("a flush after the sector was fenced says so, even once the write that found out is past", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const sink = yield* SectorSink.SectorSink
      yield* host.submit(1, [set(1, "a", 1)])
      yield* host.flush(1)
      yield* sink.load(1) // another owner claims it
      yield* sink.persist(SinkConformance.batchOf(1, 2, [set(2, "b", 1), set(3, "b", 1)], 2)) // and writes seqs 2..3
      yield* host.submit(1, [set(1, "a", 2)]) // accepted by the stale instance as seq 2
      yield* advance(30) // its batch goes out at maxWait and is fenced: the ops are lost
      assert.strictEqual((yield* host.stats(1)).phase, "passive") // reads go to the sink now
      // not the owner's watermark (3, which would pass for this op's seq 2): the op this host accepted is lost
      assert.strictEqual((yield* Effect.flip(host.flush(1)))._tag, "SectorFenced")
      // the fenced instance is dropped; the sector's flush is the owner's watermark again
      assert.strictEqual(yield* host.flush(1), 3)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("stops writing once another owner claimed the sector (fencing)", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      const sink = yield* SectorSink.SectorSink
      yield* host.submit(1, [set(1, "a", 1)])
      yield* host.flush(1)
      yield* sink.load(1) // another owner claims it
      yield* host.submit(1, [set(1, "a", 2)])
      const error = yield* Effect.flip(host.flush(1))
      assert.strictEqual(error._tag, "SectorFenced")
      assert.deepStrictEqual(store.rows(1).components.map((r) => r.data), [{ x: 1 }])
      // the fenced instance's memory (x: 2) is never served; the next write reloads under a claim of its own
      const read = yield* host.get(1, 1)
      assert.deepStrictEqual(Option.map(read, (v) => v.components["a"]), Option.some({ x: 1 }))
      const again = yield* host.submit(1, [set(1, "a", 3)])
      assert.strictEqual(again.firstSeq, 2)
      assert.strictEqual(store.sector(1)?.epoch, 3)
    }).pipe(Effect.provide(hostLayer())))
})

describe("Sector tracing", () => {
  /** A host whose sink notes the span each persist runs in (its batch's `Sector.persist`, if any). */
  const seenBy = (tracer: Layer.Layer<never>) => {
    const spans: Array<string | undefined> = []
    const sink = Layer.effect(SectorSink.SectorSink)(Effect.map(SectorSink.SectorSink, (inner) => ({
      ...inner,
      persist: (batch) =>
        Effect.andThen(
          Effect.map(Effect.option(Effect.currentSpan), (span) => void spans.push(Option.getOrUndefined(span)?.name)),
          inner.persist(batch)
        )
    }))).pipe(Layer.provide(SectorSink.layerMemory))
    const layer = SectorHost.layer.pipe(
      Layer.provide(sink),
      Layer.provide(SectorsConfig.layer({ policy: policy() })),
      Layer.provide(tracer)
    )
    return { spans, layer }
  }

  it.effect("makes no batch span under effect's native tracer, which records nothing", () => {
    const { layer, spans } = seenBy(Layer.empty)
    return Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)])
      yield* advance(25)
      assert.deepStrictEqual(spans, [undefined])
    }).pipe(Effect.provide(layer))
  })

  it.effect("persists each batch in its Sector.persist span under a tracer that records", () => {
    const recording = Tracer.make({ span: (options) => Tracer.nativeTracer.span(options) })
    const { layer, spans } = seenBy(Layer.succeed(Tracer.Tracer)(recording))
    return Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)])
      yield* advance(25)
      assert.deepStrictEqual(spans, ["Sector.persist"])
    }).pipe(Effect.provide(layer))
  })
})
