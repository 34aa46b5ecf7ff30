import { assert, describe, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Metric, Option } from "effect"
import { Metrics, type Sector, SectorHost, SectorSink } from "../src/index.ts"
import { FaultSink, MemorySink } from "../src/testing.ts"
import { advance, hostLayer, policy, set, unreadable } from "./support.ts"

describe("SectorHost", () => {
  it.effect("trySubmit accepts at once what submit would, and leaves to submit whatever must wait, refuse or wake", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      const faults = yield* FaultSink.Faults
      const seqs = (exit: Exit.Exit<{ readonly firstSeq: number; readonly lastSeq: number }> | undefined) =>
        exit !== undefined && Exit.isSuccess(exit) ? [exit.value.firstSeq, exit.value.lastSeq] : exit
      assert.isUndefined(host.trySubmit(1, [set(1)]), "not resident: submit activates it")
      yield* host.submit(1, [set(1)])
      // awake: at once, in call order with submit's, the same answer
      assert.deepStrictEqual(seqs(host.trySubmit(1, [set(2), set(3)])), [2, 3])
      assert.strictEqual((yield* host.submit(1, [set(4)])).firstSeq, 4)
      assert.deepStrictEqual(seqs(host.trySubmit(1, [set(5)])), [5, 5])
      assert.isUndefined(host.trySubmit(1, []), "an empty submission is submit's to refuse")
      assert.strictEqual((yield* host.stats(1)).lastSeq, 5)
      yield* host.flush(1)
      assert.deepStrictEqual(store.rows(1).components.map((row) => [row.entity, row.seq]), [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]])
      yield* advance(30) // nothing left to do: the sector's fibers end, it is idle
      assert.strictEqual((yield* host.stats(1)).awake, false)
      assert.isUndefined(host.trySubmit(1, [set(8)]), "idle: submit wakes it")
      yield* host.submit(1, [set(8)])
      assert.deepStrictEqual(seqs(host.trySubmit(1, [set(9)])), [7, 7])
      // at maxPendingKeys (7) with a batch in flight: submit waits for room, trySubmit applies nothing
      yield* faults.slow(Duration.seconds(1))
      yield* host.submit(1, [10, 11, 12, 13, 14].map((e) => set(e))) // minBatch: out at once, in flight for 1 s
      yield* advance(1)
      yield* host.submit(1, [15, 16, 17, 18, 19, 20, 21].map((e) => set(e))) // 7 keys again
      assert.isUndefined(host.trySubmit(1, [set(22)]), "at maxPendingKeys")
      assert.strictEqual((yield* host.stats(1)).lastSeq, 19)
      yield* faults.reset
      yield* advance(1_100, 10)
      yield* host.shutdown
      assert.isUndefined(host.trySubmit(1, [set(10)]), "shutting down")
    }).pipe(Effect.provide(hostLayer({ policy: policy({ maxPendingKeys: 7 }) }))))

  it.effect("trySubmitDurable accepts as trySubmit does, then answers once: durable, timed out or fenced; never after cancel", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const sink = yield* SectorSink.SectorSink
      const faults = yield* FaultSink.Faults
      const heard: Array<string> = []
      const hear = (name: string) => (exit: Exit.Exit<Sector.Accepted, Sector.DurableWaitError>) =>
        heard.push(
          Exit.isSuccess(exit)
            ? `${name} ${exit.value.firstSeq}..${exit.value.lastSeq} persisted ${exit.value.persisted}`
            : `${name} ${(Cause.squash(exit.cause) as Sector.DurableWaitError)._tag}`
        )
      const seqs = (exit: Exit.Exit<() => void> | undefined) => exit !== undefined && Exit.isSuccess(exit) ? "taken" : exit
      assert.isUndefined(host.trySubmitDurable(1, [set(1)], { onDurable: hear("asleep") }), "not resident")
      yield* host.submit(1, [set(1)])
      assert.strictEqual(seqs(host.trySubmitDurable(1, [set(2), set(3)], { onDurable: hear("a") })), "taken")
      const dropped = host.trySubmitDurable(1, [set(4)], { onDurable: hear("dropped") })
      assert.isTrue(dropped !== undefined && Exit.isSuccess(dropped))
      if (dropped !== undefined && Exit.isSuccess(dropped)) dropped.value()
      assert.deepStrictEqual(heard, [], "accepted now, answered once durable")
      assert.strictEqual((yield* host.stats(1)).lastSeq, 4)
      yield* advance(30)
      assert.deepStrictEqual(heard, ["a 2..3 persisted true"], "the cancelled wait hears nothing")

      // not durable within its timeout: DurableTimeout, once, and nothing when its ops become durable later
      yield* faults.slow(Duration.seconds(1))
      yield* host.submit(1, [set(5)])
      assert.strictEqual(seqs(host.trySubmitDurable(1, [set(6)], { timeout: "100 millis", onDurable: hear("late") })), "taken")
      yield* advance(100)
      assert.deepStrictEqual(heard.slice(1), ["late DurableTimeout"])
      yield* faults.reset
      yield* advance(1_100, 10)
      assert.strictEqual(yield* host.flush(1), 6)
      assert.deepStrictEqual(heard.slice(1), ["late DurableTimeout"])

      // another owner claims the sector: the wait fails with SectorFenced (its ops are lost)
      yield* host.submit(1, [set(7)])
      assert.strictEqual(seqs(host.trySubmitDurable(1, [set(8)], { onDurable: hear("fenced") })), "taken")
      yield* sink.load(1)
      yield* advance(30)
      assert.deepStrictEqual(heard.slice(2), ["fenced SectorFenced"])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("trySubmit takes nothing the host's budget cannot hold: past it, it declines and submit refuses BufferFull", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      for (let sector = 1; sector <= 4; sector++) yield* host.submit(sector, [set(0)])
      yield* host.flush(4)
      yield* faults.outage(5_000) // nothing commits: the budget only fills
      // what trySubmit did with each submission, and what submit then did with one it declined
      const outcomes: Array<string> = []
      let mostBuffered = 0
      for (let i = 0; i < 400; i++) {
        const sector = 1 + (i % 4)
        const exit = host.trySubmit(sector, [set(i, "c", i)])
        if (exit === undefined) {
          const submitted = yield* Effect.exit(host.submit(sector, [set(i, "c", i)]))
          outcomes.push(`declined, then ${Exit.isSuccess(submitted) ? "accepted" : Cause.pretty(submitted.cause).split("\n")[0]}`)
        } else outcomes.push(Exit.isSuccess(exit) ? "accepted" : "defect")
        mostBuffered = Math.max(mostBuffered, host.buffer().bufferedBytes)
      }
      // the sink back before asserting: the host's shutdown flushes everything accepted
      yield* faults.reset
      yield* advance(12_000, 50)
      assert.strictEqual(host.buffer().bufferedBytes, 0)
      assert.isAtMost(mostBuffered, 16 * 1024)
      // once the budget is spent trySubmit takes nothing more, and submit refuses what it declines for the budget
      const spent = outcomes.findIndex((outcome) => outcome.startsWith("declined, then BufferFull"))
      assert.isAbove(spent, 0, JSON.stringify(outcomes.slice(0, 40)))
      assert.isTrue(outcomes.slice(spent).every((outcome) => outcome.startsWith("declined, then BufferFull")), JSON.stringify(outcomes.slice(spent)))
    }).pipe(Effect.provide(hostLayer({ maxBufferedBytes: 16 * 1024 }))))

  it.effect("trySubmit counts a data length its caller measured as the op's data in the budget, not measuring it again", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      for (const sector of [1, 2]) yield* host.submit(sector, [set(0)])
      yield* host.flush(1)
      yield* host.flush(2)
      assert.strictEqual(host.buffer().bufferedBytes, 0)
      const op = set(1, "c", 5) // data {"x":5}: 7 characters of JSON
      assert.isTrue(Exit.isExit(host.trySubmit(1, [op])))
      const measured = host.buffer().bufferedBytes
      assert.isTrue(Exit.isExit(host.trySubmit(2, [op], [1_000])))
      // three bytes of heap a character of JSON (`Batch.cellBytes`): the told length, not the 7 measured
      assert.strictEqual(host.buffer().bufferedBytes - measured, measured + 3 * (1_000 - 7))
    }).pipe(Effect.provide(hostLayer())))

  it.effect("trySubmit counts as a use: at the cap, the sector least recently submitted to is let go first", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)])
      yield* host.submit(2, [set(1)])
      assert.isDefined(host.trySubmit(1, [set(2)])) // sector 1 is now the most recently used
      yield* advance(30) // both flush and go idle
      yield* host.submit(3, [set(1)]) // at the cap of 2: the least recently used idle sector goes
      yield* advance(10)
      assert.deepStrictEqual(
        [(yield* host.stats(1)).phase, (yield* host.stats(2)).phase, (yield* host.stats(3)).phase],
        ["running", "passive", "running"]
      )
    }).pipe(Effect.provide(hostLayer({ maxActiveSectors: 2 }))))

  it.effect("trySubmit of an op the state cannot apply is a defect, and the sector restarts losing nothing accepted", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1)])
      const exit = host.trySubmit(1, [set(2), unreadable()])
      assert.isTrue(exit !== undefined && Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      const later = yield* Effect.forkChild(host.submit(1, [set(3)]))
      yield* advance(500, 5)
      const accepted = yield* Fiber.join(later)
      assert.strictEqual((yield* host.stats(1)).counters.restarts, 1)
      assert.strictEqual(yield* host.flush(1), accepted.lastSeq)
      assert.deepStrictEqual(store.rows(1).components.map((row) => row.entity), [1, 2, 3])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("activates sectors on their first write and lists them; reading an unknown sector activates nothing", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      assert.deepStrictEqual(yield* host.list, [])
      yield* host.submit(3, [set(1)])
      yield* host.submit(5, [set(1), set(2)])
      const list = yield* host.list
      assert.deepStrictEqual(list.map((s) => [s.sectorId, s.lastSeq, s.pendingOps]).sort(), [[3, 1, 1], [5, 2, 2]])
      assert.deepStrictEqual(yield* host.get(7, 1), Option.none())
      assert.strictEqual((yield* host.stats(7)).phase, "passive")
      assert.strictEqual(yield* host.flush(7), 0)
      assert.strictEqual((yield* host.list).length, 2)
      assert.deepStrictEqual(host.residency(), { active: 2, maxActiveSectors: 100_000 })
    }).pipe(Effect.provide(hostLayer())))

  it.effect("passivates an idle sector after flushing it, serves reads from the sink, and reloads it on the next write", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1, "a", 7)])
      yield* advance(Duration.toMillis(Duration.minutes(1)) + 100, 1000)
      assert.deepStrictEqual(yield* host.list, [])
      assert.strictEqual(store.sector(1)?.persistedSeq, 1)
      const view = yield* host.get(1, 1)
      assert.deepStrictEqual(Option.map(view, (v) => v.components), Option.some({ a: { x: 7 } }))
      assert.strictEqual(store.sector(1)?.epoch, 1)
      assert.deepStrictEqual(yield* host.list, [])
      const next = yield* host.submit(1, [set(2)])
      assert.strictEqual(next.firstSeq, 2)
      assert.strictEqual(store.sector(1)?.epoch, 2)
    }).pipe(Effect.provide(hostLayer({ passivateAfter: Duration.minutes(1) }))))

  it.effect("passivates every idle sector once its own passivateAfter has passed since its last use", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const resident = Effect.map(host.list, (sectors) => sectors.map((sector) => sector.sectorId).sort())
      const seconds = (n: number) => advance(n * 1000, 1000)
      yield* host.submit(1, [set(1)]) // t = 0
      yield* seconds(10)
      yield* host.submit(2, [set(1)]) // t = 10 s
      yield* seconds(30)
      yield* host.submit(1, [set(2)]) // t = 40 s: 1 is used again, so it is due at 100 s, not 60 s
      yield* seconds(21) // t = 61 s
      assert.deepStrictEqual(yield* resident, [1, 2])
      yield* seconds(10) // t = 71 s: 2 is due (10 s + 60 s)
      assert.deepStrictEqual(yield* resident, [1])
      yield* seconds(30) // t = 101 s
      assert.deepStrictEqual(yield* resident, [])
      const store = yield* MemorySink.MemorySink
      assert.deepStrictEqual([store.sector(1)?.persistedSeq, store.sector(2)?.persistedSeq], [2, 1])
    }).pipe(Effect.provide(hostLayer({ passivateAfter: Duration.minutes(1) }))))

  it.effect("shuts down in order: intake stops, everything is flushed, the report counts it", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      for (let sector = 0; sector < 10; sector++) yield* host.submit(sector, [set(1), set(2), set(3)])
      const report = yield* host.shutdown
      assert.deepStrictEqual({ ...report, durationMs: 0 }, {
        sectors: 10,
        flushed: 30,
        unflushed: 0,
        unflushedSectors: [],
        durationMs: 0
      })
      for (let sector = 0; sector < 10; sector++) assert.strictEqual(store.sector(sector)?.persistedSeq, 3)
      const refused = yield* Effect.flip(host.submit(1, [set(9)]))
      assert.strictEqual(refused._tag, "ShuttingDown")
      assert.isFalse(host.accepting())
      assert.deepStrictEqual(yield* host.shutdown, report)
      assert.strictEqual((yield* Metric.value(Metrics.shutdownFlushed)).value, 30)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("reports exactly what it could not flush when the sink is down, within shutdownTimeout", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      yield* host.submit(1, [set(1)])
      yield* host.flush(1)
      yield* host.submit(2, [set(0)]) // activated while the sink is still up
      yield* host.flush(2)
      yield* faults.outage(Duration.hours(1))
      yield* host.submit(1, [set(2), set(3)])
      yield* host.submit(2, [set(1)])
      const shutdown = yield* Effect.forkChild(host.shutdown)
      yield* advance(2_100, 50)
      const report = yield* Fiber.join(shutdown)
      assert.strictEqual(report.sectors, 2)
      assert.strictEqual(report.unflushed, 3)
      assert.deepStrictEqual([...report.unflushedSectors].sort(), [1, 2])
      assert.isAtMost(report.durationMs, 2_100)
    }).pipe(Effect.provide(hostLayer({ shutdownTimeout: Duration.seconds(2) }))))

  it.effect("drains the mailbox on shutdown: submissions already queued are accepted and flushed", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      const faults = yield* FaultSink.Faults
      yield* host.submit(1, [set(1)])
      yield* faults.dieNext(1)
      yield* host.flush(1).pipe(Effect.forkChild({ startImmediately: true }))
      yield* advance(1) // its batch dies: the sector reloads, in an outage, and takes submissions into its mailbox
      yield* faults.outage(200)
      // two submissions enter the mailbox and the shutdown begins before the sector can take them
      const queued = yield* Effect.forkChild(host.submit(1, [set(3), set(4)]), { startImmediately: true })
      const queued2 = yield* Effect.forkChild(host.submit(1, [set(5)]), { startImmediately: true })
      assert.strictEqual((yield* host.stats(1)).mailboxDepth, 2)
      const shutdown = yield* Effect.forkChild(host.shutdown, { startImmediately: true })
      yield* advance(1_000, 10)
      const report = yield* Fiber.join(shutdown)
      assert.strictEqual((yield* Fiber.join(queued)).lastSeq, 3)
      assert.strictEqual((yield* Fiber.join(queued2)).lastSeq, 4)
      assert.strictEqual(report.unflushed, 0)
      assert.strictEqual(store.sector(1)?.persistedSeq, 4)
    }).pipe(Effect.provide(hostLayer({ policy: policy({ minBatch: 100, maxBatch: 100, maxWait: 600_000 }) }))))
})
