import { assert, describe, it } from "@effect/vitest"
import { Errors, Metrics, type Op, type Sector, SectorHost } from "@sectors/core"
import { TestHost } from "@sectors/core/testing"
import { Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { Driver, type Workload } from "../src/index.ts"

/** 1 000 ops/s over 5 sectors of 50 entities. */
const steady: Workload.Workload = { rate: () => 1_000, sectors: 5, entitiesPerSector: 50 }

/** Advances the TestClock by `millis` in steps of `step`, letting fibers run between them. */
const advance = (millis: number, step = 10) =>
  Effect.gen(function*() {
    for (let elapsed = 0; elapsed < millis; elapsed += step) {
      yield* TestClock.adjust(Math.min(step, millis - elapsed))
      yield* Effect.yieldNow
    }
  })

/** Runs `drive` in the background, collecting its reports. */
const start = (workload: Workload.Workload, options: Driver.Options = {}) =>
  Effect.gen(function*() {
    const reports: Array<Driver.Second> = []
    const fiber = yield* Effect.forkChild(
      Driver.drive(workload, { ...options, onSecond: (second) => Effect.sync(() => void reports.push(second)) })
    )
    return { fiber, reports }
  })

const sum = (reports: ReadonlyArray<Driver.Second>, key: "offered" | "accepted" | "refused" | "unfinished" | "persisted") =>
  reports.reduce((n, s) => n + s[key], 0)

/** A host whose `submit` is `submit`; nothing else of it is used. */
const hostWith = (submit: SectorHost.SectorHost["Service"]["submit"]) =>
  Layer.succeed(SectorHost.SectorHost, {
    submit,
    trySubmit: () => undefined,
    trySubmitDurable: () => undefined,
    get: () => Effect.die("unused"),
    stats: () => Effect.die("unused"),
    flush: () => Effect.die("unused"),
    list: Effect.die("unused"),
    residency: () => ({ active: 0, maxActiveSectors: 1 }),
    buffer: () => ({ bufferedBytes: 0, budgetBytes: 1, full: false }),
    sinkHealth: () => ({ up: true, downSince: undefined }),
    deadLetters: () => Effect.die("unused"),
    release: () => Effect.die("unused"),
    shutdown: Effect.die("unused"),
    accepting: () => true,
    circuit: () => ({ _tag: "Closed" }),
    unflushed: () => ({ ops: 0, sectors: [] })
  })

const accepted = (sectorId: number, ops: ReadonlyArray<Op.Op>): Sector.Accepted => ({
  sectorId,
  accepted: ops.length,
  firstSeq: 1,
  lastSeq: ops.length,
  persisted: false
})

describe("Driver", () => {
  it.effect("offers the workload's rate and reports once a second what the host accepted and persisted", () =>
    Effect.gen(function*() {
      const { fiber, reports } = yield* start(steady, { duration: "3 seconds", commits: Metrics.batches })
      yield* advance(3_100)
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(reports.map((s) => s.second), [1, 2, 3])
      // each second offers its 1 000 ops, give or take the one tick a boundary falls into
      for (const s of reports) assert.approximately(s.offered, 1_000, 10)
      assert.approximately(sum(reports, "offered"), 3_000, 10)
      assert.strictEqual(sum(reports, "refused"), 0)
      assert.strictEqual(sum(reports, "unfinished"), 0)
      // a durable submission answered after its second's report is not counted: at most a few per second
      assert.isAtLeast(sum(reports, "accepted"), 0.95 * sum(reports, "offered"))
      // what was accepted in the last 25 ms (maxWait) may not be flushed yet
      assert.isAtLeast(sum(reports, "persisted"), sum(reports, "offered") - 100)
      assert.isAtMost(sum(reports, "persisted"), sum(reports, "offered"))
      for (const s of reports) {
        assert.isAbove(s.batches, 0)
        assert.strictEqual(s.commits, s.batches)
      }
    }).pipe(Effect.provide(TestHost.layer())))

  it.effect("times one submission in durableSample with a durable ack, op→durable within the flush wait", () =>
    Effect.gen(function*() {
      let submissions = 0
      const { fiber, reports } = yield* start(steady, {
        duration: "2 seconds",
        durableSample: 10,
        onSubmit: () => void submissions++
      })
      yield* advance(2_100)
      yield* Fiber.join(fiber)
      const samples = reports.flatMap((s) => s.durableMillis)
      assert.isAbove(submissions, 500)
      assert.strictEqual(samples.length, Math.floor(submissions / 10))
      for (const ms of samples) assert.isTrue(ms >= 0 && ms <= 50, `${ms} ms`) // maxWait is 25 ms, the clock steps 10
    }).pipe(Effect.provide(TestHost.layer())))

  it.effect("offers the same submissions at the same moments under the same seed, and others under another", () =>
    Effect.gen(function*() {
      const log = (seed: number) =>
        Effect.gen(function*() {
          const submissions: Array<unknown> = []
          const fiber = yield* Effect.forkChild(Driver.drive(steady, {
            duration: "1 second",
            seed,
            onSubmit: (sectorId, ops, atMillis) => void submissions.push({ sectorId, ops, atMillis })
          }))
          yield* advance(1_100)
          yield* Fiber.join(fiber)
          return submissions
        })
      const first = yield* log(42)
      assert.isAbove(first.length, 100)
      assert.deepStrictEqual(yield* log(42), first)
      assert.notDeepEqual(yield* log(43), first)
    }).pipe(Effect.provide(hostWith((sectorId, ops) => Effect.succeed(accepted(sectorId, ops))))))

  it.effect("counts what the host refuses as refused", () =>
    Effect.gen(function*() {
      const { fiber, reports } = yield* start(steady, { duration: "1 second" })
      yield* advance(1_100)
      yield* Fiber.join(fiber)
      assert.isAbove(sum(reports, "offered"), 900)
      assert.strictEqual(sum(reports, "refused"), sum(reports, "offered"))
      assert.strictEqual(sum(reports, "accepted"), 0)
    }).pipe(Effect.provide(hostWith((sectorId) =>
      Effect.fail(new Errors.MailboxFull({ sectorId, capacity: 1, retryAfterMillis: 1_000 }))
    ))))

  it.effect("at the end of its duration, waits for the submissions under way and counts them in its last report", () =>
    Effect.gen(function*() {
      // every submission takes 2 s to be answered
      let submissions = 0
      const { fiber, reports } = yield* start(steady, {
        duration: "1 second",
        durableSample: 1,
        onSubmit: () => void submissions++
      })
      yield* advance(2_500)
      assert.isUndefined(fiber.pollUnsafe(), "the run waits for its submissions")
      yield* advance(600)
      yield* Fiber.join(fiber)
      assert.strictEqual(reports.length, 1)
      const [last] = reports
      assert.approximately(last!.second, 3, 0.05)
      assert.isAbove(last!.offered, 900)
      assert.strictEqual(last!.accepted, last!.offered)
      assert.strictEqual(last!.unfinished, 0)
      assert.strictEqual(last!.durableMillis.length, submissions)
      for (const ms of last!.durableMillis) assert.strictEqual(ms, 2_000)
    }).pipe(Effect.provide(hostWith((sectorId, ops) =>
      Effect.as(Effect.sleep("2 seconds"), accepted(sectorId, ops))
    ))))

  it.effect("reports the ops of submissions still unanswered after settle as unfinished, and interrupts them", () => {
    let interrupted = 0
    return Effect.gen(function*() {
      const { fiber, reports } = yield* start(steady, { duration: "1 second", durableSample: 1, settle: "2 seconds" })
      yield* advance(3_100)
      yield* Fiber.join(fiber)
      const [last] = reports
      assert.strictEqual(reports.length, 1)
      assert.approximately(last!.second, 3, 0.05)
      assert.isAbove(last!.offered, 900)
      assert.strictEqual(last!.unfinished, last!.offered)
      assert.strictEqual(last!.accepted + last!.refused, 0)
      assert.isAbove(interrupted, 0)
    }).pipe(Effect.provide(hostWith(() => Effect.onInterrupt(Effect.never, () => Effect.sync(() => void interrupted++)))))
  })

  it.effect("when interrupted, lets the submissions under way finish before it stops", () => {
    let started = 0
    let finished = 0
    return Effect.gen(function*() {
      const { fiber, reports } = yield* start(steady, { durableSample: 1 })
      yield* advance(500)
      assert.isAbove(started, 0)
      let finishedWhenStopped = -1
      const stopping = yield* Effect.forkChild(
        Effect.andThen(Fiber.interrupt(fiber), Effect.sync(() => void (finishedWhenStopped = finished)))
      )
      yield* advance(1_100)
      yield* Fiber.join(stopping)
      assert.strictEqual(finishedWhenStopped, started)
      assert.strictEqual(reports.length, 0, "an interrupted run reports nothing more")
    }).pipe(Effect.provide(hostWith((sectorId, ops) =>
      Effect.sync(() => void started++).pipe(
        Effect.andThen(Effect.sleep("1 second")),
        Effect.andThen(Effect.sync(() => void finished++)),
        Effect.as(accepted(sectorId, ops))
      )
    )))
  })
})
