import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Fiber, Layer } from "effect"
import { SectorHost } from "../src/index.ts"
import { FaultSink, MemorySink } from "../src/testing.ts"
import { advance, hostLayer, policy, set } from "./support.ts"

const key = (k: string, fingerprint = "f") => ({ idempotency: { key: k, fingerprint } })

/** A second host on the same sink: what runs after a crash, or on another machine after a failover. */
const anotherHost = Effect.map(Layer.build(Layer.fresh(SectorHost.layer)), (context) => Context.get(context, SectorHost.SectorHost))

describe("Idempotent submissions", () => {
  it.effect("a retry with the same key and fingerprint gets the original seqs and applies nothing", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const first = yield* host.submit(1, [set(1), set(2)], key("a"))
      const again = yield* host.submit(1, [set(1), set(2)], key("a"))
      assert.deepStrictEqual([first.firstSeq, first.lastSeq, first.replayed], [1, 2, undefined])
      assert.deepStrictEqual([again.firstSeq, again.lastSeq, again.accepted, again.replayed], [1, 2, 2, true])
      assert.strictEqual((yield* host.stats(1)).lastSeq, 2)
      const other = yield* host.submit(1, [set(3)], key("b"))
      assert.strictEqual(other.firstSeq, 3)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("the same key with another fingerprint is refused and applies nothing", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)], key("a", "one"))
      const error = yield* Effect.flip(host.submit(1, [set(2)], key("a", "two")))
      assert.strictEqual(error._tag, "IdempotencyMismatch")
      assert.strictEqual((yield* host.stats(1)).lastSeq, 1)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("keys are per sector", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)], key("a"))
      const other = yield* host.submit(2, [set(1)], key("a", "other"))
      assert.deepStrictEqual([other.sectorId, other.firstSeq, other.replayed], [2, 1, undefined])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("a duplicate arriving while the first still waits in the mailbox gets the first one's seqs", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)])
      const both = yield* Effect.all(
        [host.submit(1, [set(2)], key("a")), host.submit(1, [set(2)], key("a"))],
        { concurrency: 2 }
      )
      assert.deepStrictEqual(both.map((a) => [a.firstSeq, a.lastSeq]), [[2, 2], [2, 2]])
      assert.deepStrictEqual(both.map((a) => a.replayed === true).sort(), [false, true])
      assert.strictEqual((yield* host.stats(1)).lastSeq, 2)
    }).pipe(Effect.provide(hostLayer())))

  it.effect("a submission refused with MailboxFull leaves no key: its retry is applied", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const faults = yield* FaultSink.Faults
      yield* host.submit(1, [set(0)]) // activated
      yield* faults.dieNext(1)
      yield* advance(25) // its batch dies: the sector reloads, in an outage, and takes submissions into its mailbox
      yield* faults.outage(300)
      const fibers = yield* Effect.forEach(
        [1, 2, 3, 4],
        (i) => Effect.forkChild(Effect.exit(host.submit(1, [set(i)], key(`k${i}`))), { startImmediately: true })
      )
      yield* advance(1_000, 10)
      const outcomes = yield* Effect.forEach(fibers, Fiber.join)
      const refused = outcomes.flatMap((exit, i) => Exit.isFailure(exit) ? [i + 1] : [])
      assert.deepStrictEqual(refused, [2, 3, 4])
      for (const i of [1, 2, 3, 4]) {
        const retry = yield* host.submit(1, [set(i)], key(`k${i}`))
        assert.strictEqual(retry.replayed, refused.includes(i) ? undefined : true, `k${i}`)
      }
    }).pipe(Effect.provide(hostLayer({ mailboxCapacity: 1 }))))

  it.effect("a durable retry waits for the original ops to be durable", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)], key("a"))
      const fiber = yield* Effect.forkChild(host.submit(1, [set(1)], { ack: "durable", ...key("a") }))
      yield* advance(10)
      assert.isUndefined(fiber.pollUnsafe())
      yield* advance(20)
      const result = yield* Fiber.join(fiber)
      assert.deepStrictEqual([result.firstSeq, result.persisted, result.replayed], [1, true, true])
    }).pipe(Effect.provide(hostLayer())))

  it.effect("a key is stored with the batch that made its ops durable, and a new host recognises it", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1)], key("a"))
      yield* host.submit(1, [set(2), set(3)], key("b"))
      assert.deepStrictEqual(store.idempotencyKeys(1), [])
      yield* host.flush(1)
      assert.deepStrictEqual(store.idempotencyKeys(1).map((r) => [r.key, r.firstSeq, r.lastSeq]), [
        ["a", 1, 1],
        ["b", 2, 3]
      ])
      // a new owner (a restart after a crash, another host) claims the sector and knows the keys
      const next = yield* anotherHost
      const again = yield* next.submit(1, [set(2), set(3)], key("b"))
      assert.deepStrictEqual([again.firstSeq, again.lastSeq, again.persisted, again.replayed], [2, 3, true, true])
      const mismatch = yield* Effect.flip(next.submit(1, [set(9)], key("a", "other")))
      assert.strictEqual(mismatch._tag, "IdempotencyMismatch")
    }).pipe(Effect.scoped, Effect.provide(hostLayer())))

  it.effect("the key of ops lost to another owner is forgotten: the retry applies them", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1)], key("a"))
      const next = yield* anotherHost
      yield* next.submit(1, [set(5)]) // claims the sector: host's unflushed op is lost when its batch is fenced
      yield* advance(30)
      assert.deepStrictEqual(store.idempotencyKeys(1), [])
      // the retry comes back to the first host: it must apply it (under a new claim), not answer from the key
      const retry = yield* host.submit(1, [set(1)], key("a"))
      assert.deepStrictEqual([retry.firstSeq, retry.replayed], [2, undefined])
      yield* host.flush(1)
      assert.deepStrictEqual(store.idempotencyKeys(1).map((r) => [r.key, r.lastSeq]), [["a", 2]])
    }).pipe(Effect.scoped, Effect.provide(hostLayer())))

  it.effect("keys are forgotten after idempotencyTtl, in memory and in the sink", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      yield* host.submit(1, [set(1)], key("a"))
      yield* host.flush(1)
      yield* advance(999, 100)
      assert.isTrue((yield* host.submit(1, [set(1)], key("a"))).replayed)
      yield* advance(2, 1)
      const retry = yield* host.submit(1, [set(1)], key("a"))
      assert.deepStrictEqual([retry.firstSeq, retry.replayed], [2, undefined])
      yield* host.flush(1)
      // the batch that stored the new key let the sink drop the expired one
      assert.deepStrictEqual(store.idempotencyKeys(1).map((r) => r.lastSeq), [2])
    }).pipe(Effect.provide(hostLayer({ idempotencyTtl: Duration.seconds(1) }))))

  it.effect("a key given its own ttl is forgotten after it, in memory and in the sink", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const store = yield* MemorySink.MemorySink
      const short = { idempotency: { key: "short", fingerprint: "f", ttl: Duration.millis(50) } }
      yield* host.submit(1, [set(1)], short)
      yield* host.submit(1, [set(2)], key("long"))
      yield* host.flush(1)
      assert.deepStrictEqual(store.idempotencyKeys(1).map((r) => [r.key, r.expiresAt]), [["short", 50], ["long", 1000]])
      yield* advance(50, 10)
      const retry = yield* host.submit(1, [set(1)], short)
      assert.deepStrictEqual([retry.firstSeq, retry.replayed], [3, undefined])
      assert.isTrue((yield* host.submit(1, [set(2)], key("long"))).replayed)
      yield* host.flush(1)
      assert.deepStrictEqual(store.idempotencyKeys(1).map((r) => r.key), ["long", "short"])
      assert.deepStrictEqual(store.idempotencyKeys(1).map((r) => r.lastSeq), [2, 3])
    }).pipe(Effect.provide(hostLayer({ idempotencyTtl: Duration.seconds(1) }))))

  it.effect("at most maxIdempotencyKeys are held, over all sectors; the oldest goes first", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* host.submit(1, [set(1)], key("a"))
      yield* host.submit(2, [set(1)], key("b"))
      yield* host.submit(3, [set(1)], key("c"))
      assert.isUndefined((yield* host.submit(1, [set(1)], key("a"))).replayed)
      assert.isTrue((yield* host.submit(3, [set(1)], key("c"))).replayed)
    }).pipe(Effect.provide(hostLayer({ maxIdempotencyKeys: 2, policy: policy({ minBatch: 100, maxBatch: 100 }) }))))

  it.effect("refuses an empty or overlong key as invalid, applying nothing", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      for (const k of ["", "k".repeat(256)]) {
        const error = yield* Effect.flip(host.submit(1, [set(1)], key(k)))
        assert.strictEqual(error._tag, "InvalidOp")
      }
      assert.strictEqual((yield* host.submit(1, [set(1)], key("k".repeat(255)))).firstSeq, 1)
    }).pipe(Effect.provide(hostLayer())))
})
