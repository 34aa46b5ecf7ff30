import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Fiber, Layer } from "effect"
import { Errors, Resilience, SectorsConfig } from "../src/index.ts"
import { advance } from "./support.ts"

const layer = Resilience.layer.pipe(Layer.provide(SectorsConfig.layer({
  retryBase: Duration.millis(10),
  retryMaxDelay: Duration.millis(40),
  retryDeadline: Duration.millis(200),
  circuitFailures: 2,
  circuitOpenBase: Duration.seconds(1),
  circuitOpenMax: Duration.seconds(3)
})))

const transient = new Errors.SinkError({ reason: "Transient", message: "connection reset" })

/** A call that fails `n` times with `error`, then succeeds; counts its attempts. */
const flaky = (n: number, error: Errors.SinkError) => {
  let attempts = 0
  const call = Effect.suspend(() => ++attempts <= n ? Effect.fail(error) : Effect.succeed(attempts))
  return { call, attempts: () => attempts }
}

/** Opens the circuit: `circuitFailures` (2) persists that fail past their retry deadline. */
const openCircuit = (resilience: Resilience.Resilience["Service"]) =>
  Effect.gen(function*() {
    for (let i = 0; i < 2; i++) {
      const fiber = yield* Effect.forkChild(Effect.flip(resilience.guard(flaky(100, transient).call)))
      yield* advance(250, 5)
      assert.strictEqual((yield* Fiber.join(fiber))._tag, "SinkError")
    }
  })

describe("Resilience", () => {
  it.effect("retries transient failures with backoff until one succeeds", () =>
    Effect.gen(function*() {
      const resilience = yield* Resilience.Resilience
      const { attempts, call } = flaky(3, transient)
      const fiber = yield* Effect.forkChild(resilience.guard(call))
      yield* advance(200)
      assert.strictEqual(yield* Fiber.join(fiber), 4)
      assert.strictEqual(attempts(), 4)
      assert.strictEqual(resilience.status()._tag, "Closed")
    }).pipe(Effect.provide(layer)))

  it.effect("retries a call that keeps failing until retryDeadline after its first failure, then fails with its error", () =>
    Effect.gen(function*() {
      const resilience = yield* Resilience.Resilience
      const { attempts, call } = flaky(1_000, transient)
      const startedAt = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.forkChild(Effect.flip(resilience.retrying(call)))
      yield* Effect.yieldNow
      assert.strictEqual(attempts(), 1) // the call itself, at once
      yield* advance(5)
      assert.strictEqual(attempts(), 1) // the first retry waits at least half of retryBase (10 ms, jittered)
      let endedAt = startedAt
      while (fiber.pollUnsafe() === undefined) {
        yield* advance(1)
        endedAt = yield* Clock.currentTimeMillis
      }
      assert.strictEqual((yield* Fiber.join(fiber))._tag, "SinkError")
      // backoff 10, 20, 40, 40… ms (jittered): several retries, the last one begun within the 200 ms deadline
      assert.isAtLeast(attempts(), 5)
      assert.isAtMost(endedAt - startedAt, 200 + 40 * 1.2 + 1)
    }).pipe(Effect.provide(layer)))

  it.effect("does not retry a rejected batch, and a rejection does not count against the circuit", () =>
    Effect.gen(function*() {
      const resilience = yield* Resilience.Resilience
      for (let i = 0; i < 3; i++) {
        const { attempts, call } = flaky(1, new Errors.SinkError({ reason: "Rejected", message: "bad data" }))
        const error = yield* Effect.flip(resilience.guard(call))
        assert.strictEqual(error._tag, "SinkError")
        assert.strictEqual(attempts(), 1)
      }
      assert.strictEqual(resilience.status()._tag, "Closed")
      assert.deepStrictEqual(resilience.health(), { up: true, downSince: undefined })
    }).pipe(Effect.provide(layer)))

  it.effect("opens after consecutive failed persists, lets one probe through and closes; health follows the sink", () =>
    Effect.gen(function*() {
      const resilience = yield* Resilience.Resilience
      const failingSince = yield* Clock.currentTimeMillis
      yield* openCircuit(resilience)
      assert.strictEqual(resilience.status()._tag, "Open")
      const health = resilience.health()
      assert.isFalse(health.up)
      assert.isTrue(health.downSince !== undefined && health.downSince >= failingSince, JSON.stringify(health))
      const rejected = yield* Effect.flip(resilience.guard(Effect.succeed(1)))
      assert.strictEqual(rejected._tag, "SinkUnavailable")
      assert.isAbove(rejected._tag === "SinkUnavailable" ? rejected.retryAfterMillis : 0, 500)
      yield* advance(1_000, 10)
      assert.strictEqual(yield* resilience.guard(Effect.succeed(7)), 7)
      assert.strictEqual(resilience.status()._tag, "Closed")
      assert.deepStrictEqual(resilience.health(), { up: true, downSince: undefined })
    }).pipe(Effect.provide(layer)))

  it.effect("a success that ends after another persist failed resets the count of consecutive failures", () =>
    Effect.gen(function*() {
      const resilience = yield* Resilience.Resilience
      // a persist under way while the sink is up, which succeeds only after another one has failed
      const gate = yield* Deferred.make<void>()
      const slow = yield* Effect.forkChild(resilience.guard(Deferred.await(gate).pipe(Effect.as("slow"))))
      yield* advance(5)
      const first = yield* Effect.forkChild(Effect.flip(resilience.guard(flaky(100, transient).call)))
      yield* advance(250, 5)
      assert.strictEqual((yield* Fiber.join(first))._tag, "SinkError")
      assert.isFalse(resilience.health().up)
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Fiber.join(slow), "slow")
      assert.isTrue(resilience.health().up)
      // one more failure is one in a row, not two: the circuit (2 in a row) stays closed
      const second = yield* Effect.forkChild(Effect.flip(resilience.guard(flaky(100, transient).call)))
      yield* advance(250, 5)
      assert.strictEqual((yield* Fiber.join(second))._tag, "SinkError")
      assert.strictEqual(resilience.status()._tag, "Closed")
    }).pipe(Effect.provide(layer)))

  it.effect("while the half-open probe runs, other persists wait for it to settle instead of polling", () =>
    Effect.gen(function*() {
      const resilience = yield* Resilience.Resilience
      yield* openCircuit(resilience)
      yield* advance(1_000, 10)
      // the probe: a persist that takes as long as the test says
      const gate = yield* Deferred.make<void>()
      const probe = yield* Effect.forkChild(resilience.guard(Deferred.await(gate).pipe(Effect.as("probe"))))
      yield* advance(5)
      assert.strictEqual(resilience.status()._tag, "HalfOpen")
      // another sector's persist meanwhile: it is not run, and it does not come back while the probe runs
      let waiterRuns = 0
      const waiter = yield* Effect.forkChild(Effect.flip(resilience.guard(Effect.sync(() => ++waiterRuns))))
      yield* advance(30)
      assert.isUndefined(waiter.pollUnsafe(), "the waiting persist returned while the probe was still running")
      assert.strictEqual(waiterRuns, 0)
      // the probe succeeds: the waiter comes back at once, to try again against the closed circuit
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Fiber.join(probe), "probe")
      const settled = yield* Fiber.join(waiter)
      assert.strictEqual(settled._tag, "SinkUnavailable")
      assert.strictEqual(settled._tag === "SinkUnavailable" && settled.retryAfterMillis, 0)
      assert.strictEqual(resilience.status()._tag, "Closed")
      assert.strictEqual(yield* resilience.guard(Effect.sync(() => ++waiterRuns)), 1)
    }).pipe(Effect.provide(layer)))
})
