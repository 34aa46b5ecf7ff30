/**
 * The claim fence on a real PostgreSQL: a sector's row is written by the first batch after a claim and by batches
 * whose last op leaves no row, and skipped otherwise; `load` still returns the last committed seq; a stale owner
 * whose batches skipped the row is fenced once another sink has claimed the sector, in both statement paths; a claim
 * waits for the group commits in flight. Two sinks on one database stand for two hosts.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { type Op, SectorSink } from "@sectors/core"
import { SinkConformance } from "@sectors/core/testing"
import { Deferred, Effect, Fiber, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import * as fc from "fast-check"
import { locksOf, maxLocks, rangeKey, slotKey, slotOf } from "../src/internal/fence.ts"
import { Migrations, SinkPg, Statements } from "../src/index.ts"
import { sinkLayer } from "./support.ts"

let nextSector = 1
const set = (entity: number, x: number): Op.Op => ({ type: "set", entity, component: "a", data: { x } })

/** The watermark written in the sector's row. */
const rowWatermark = (sectorId: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ persisted_seq: bigint }>`SELECT persisted_seq FROM sectors WHERE sector_id = ${sectorId}`,
      (rows) => Number(rows[0]!.persisted_seq)
    ))

layer(sinkLayer(), { excludeTestServices: true })("the claim fence", (it) => {
  it.effect("writes the sector row on the first batch after a claim, then lets the rows carry the watermark", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectorId = nextSector++
      const { epoch } = yield* sink.load(sectorId)
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 1)]))
      assert.strictEqual(yield* rowWatermark(sectorId), 1)
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 2), set(2, 3)], 2))
      assert.strictEqual(yield* rowWatermark(sectorId), 1, "the second batch skipped the sector row")
      assert.strictEqual((yield* sink.read(sectorId)).persistedSeq, 3)
      const loaded = yield* sink.load(sectorId)
      assert.strictEqual(loaded.persistedSeq, 3)
      // after the claim the row is written again
      yield* sink.persist(SinkConformance.batchOf(sectorId, loaded.epoch, [set(3, 4)], 4))
      assert.strictEqual(yield* rowWatermark(sectorId), 4)
    }))

  it.effect("stores a vouched batch's idempotency keys and forgets expired ones without the sector row", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectorId = nextSector++
      const { epoch } = yield* sink.load(sectorId)
      const record = (key: string, seq: number, expiresAt: number) =>
        ({ key, fingerprint: `f-${key}`, firstSeq: seq, lastSeq: seq, expiresAt })
      yield* sink.persist({
        ...SinkConformance.batchOf(sectorId, epoch, [set(1, 1)]),
        idempotencyKeys: [record("a", 1, 1_700_000_000_000)]
      })
      yield* sink.persist({
        ...SinkConformance.batchOf(sectorId, epoch, [set(1, 2)], 2),
        idempotencyKeys: [record("b", 2, 1_700_000_002_000)],
        forgetKeysExpiredBy: 1_700_000_001_000
      })
      assert.strictEqual(yield* rowWatermark(sectorId), 1, "the second batch skipped the sector row")
      const keys = (yield* sink.load(sectorId)).idempotencyKeys ?? []
      assert.deepStrictEqual(keys.map((k) => k.key), ["b"])
    }))

  it.effect("writes the watermark for a batch whose last op leaves no row", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectorId = nextSector++
      const { epoch } = yield* sink.load(sectorId)
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 1), set(9, 1)]))
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 3), { type: "delete", entity: 9 }], 3))
      assert.strictEqual(yield* rowWatermark(sectorId), 4)
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(2, 5), { type: "remove", entity: 2, component: "a" }], 5))
      assert.strictEqual(yield* rowWatermark(sectorId), 6)
      assert.strictEqual((yield* sink.load(sectorId)).persistedSeq, 6)
    }))

  it.effect("answers a batch older than one it applied as a replay, though the rows no longer show it", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectorId = nextSector++
      const { epoch } = yield* sink.load(sectorId)
      const first = SinkConformance.batchOf(sectorId, epoch, [set(1, 1), set(2, 2)])
      yield* sink.persist(first)
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(2, 3)], 3))
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [{ type: "delete", entity: 1 }, set(2, 5)], 4))
      // the sector row still says 2: only the sink's memory tells this replay from a new batch
      assert.strictEqual(yield* rowWatermark(sectorId), 2)
      yield* sink.persist(first)
      const rows = (yield* sink.read(sectorId)).rows.components.map((r) => [r.entity, r.data])
      assert.deepStrictEqual(rows, [[2, { x: 5 }]])
    }))

  for (
    const [path, ops] of [
      ["its single statement", [set(3, 666)]],
      ["its transaction", [{ type: "remove", entity: 2, component: "a" }, set(3, 666)]]
    ] as const satisfies ReadonlyArray<readonly [string, ReadonlyArray<Op.Op>]>
  ) {
    it.effect(`fences a stale owner whose batches skipped the sector row, in ${path}`, () =>
      Effect.scoped(Effect.gen(function*() {
        const hostA = yield* SectorSink.SectorSink
        // another host: a sink of its own (its own fence memory) on the same database
        const hostB = yield* SinkPg.make()
        const sectorId = nextSector++
        const { epoch } = yield* hostA.load(sectorId)
        yield* hostA.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 1), set(2, 1)]))
        yield* hostA.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 3)], 3))
        assert.strictEqual(yield* rowWatermark(sectorId), 2, "host A's second batch skipped the sector row")
        const claimed = yield* hostB.load(sectorId)
        assert.strictEqual(claimed.persistedSeq, 3)
        const late = yield* Effect.flip(hostA.persist(SinkConformance.batchOf(sectorId, epoch, ops, 4)))
        assert.strictEqual(late.reason, "Fenced")
        const rows = (yield* hostB.read(sectorId)).rows.components.map((r) => [r.entity, r.data])
        assert.deepStrictEqual(rows.sort(), [[1, { x: 3 }], [2, { x: 1 }]])
      })))
  }

  it.effect("writes a vouched sector's batch through its sector row once a claim of another sector moved the sequence", () =>
    Effect.scoped(Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const other = yield* SinkPg.make()
      const sectorId = nextSector++
      const { epoch } = yield* sink.load(sectorId)
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 1)]))
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 2)], 2))
      assert.strictEqual(yield* rowWatermark(sectorId), 1)
      yield* other.load(nextSector++)
      yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, [set(1, 3)], 3))
      assert.strictEqual(yield* rowWatermark(sectorId), 3, "checked again")
      assert.deepStrictEqual((yield* sink.read(sectorId)).rows.components.map((r) => r.data), [{ x: 3 }])
    })))

  /**
   * A group commit of `sectors` (at their epochs) in flight, vouched for (the lean statement: it takes the fence's
   * locks shared and touches no sector row), run in a transaction that stays open until `release` completes or the
   * test ends.
   */
  const inFlight = (sectors: ReadonlyArray<readonly [sectorId: number, epoch: number]>, x: number) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [read] = yield* sql<{ claims: bigint }>`SELECT pg_sequence_last_value('sector_claims') AS claims`
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      const group = sectors.map(([sectorId, epoch]) => SinkConformance.batchOf(sectorId, epoch, [set(1, x)], x))
      const statement = Statements.upsertGroup(sql, group, {
        sectors: new Set(sectors.map(([sectorId]) => sectorId)),
        claims: Number(read!.claims)
      })
      assert.notInclude(statement.compile()[0], "UPDATE sectors")
      const commit = yield* Effect.forkChild(sql.withTransaction(
        statement.pipe(Effect.andThen(Deferred.succeed(holding, undefined)), Effect.andThen(Deferred.await(release)))
      ))
      yield* Deferred.await(holding)
      return { commit, release }
    })

  /** Whether `claim` is seen waiting for one of the fence's locks (exclusive, not granted) before it ends. */
  const waitsForFence = <A, E>(claim: Fiber.Fiber<A, E>) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.raceFirst(
        sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_locks
          WHERE locktype = 'advisory' AND NOT granted AND mode = 'ExclusiveLock' AND objsubid = 2
            AND classid = ${Migrations.fenceLockClass}::oid`.pipe(
          Effect.map((rows) => rows[0]!.n),
          Effect.repeat({ until: (n) => n > 0, schedule: Schedule.spaced("10 millis") }),
          Effect.as("the claim waits" as const)
        ),
        Effect.as(Fiber.await(claim), "the claim ended" as const)
      ))

  it.effect("a claim waits for the group commits in flight that hold its sector's slot, and reads what they wrote", () =>
    Effect.scoped(Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectorId = nextSector++
      const { epoch } = yield* sink.load(sectorId)
      const { commit, release } = yield* inFlight([[sectorId, epoch]], 7)
      const claim = yield* Effect.forkChild(sink.load(sectorId))
      assert.strictEqual(yield* waitsForFence(claim), "the claim waits")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(commit)
      const claimed = yield* Fiber.join(claim)
      assert.strictEqual(claimed.epoch, epoch + 1)
      assert.deepStrictEqual(claimed.rows.components.map((r) => [r.entity, r.data, r.seq]), [[1, { x: 7 }, 7]])
      assert.strictEqual(claimed.persistedSeq, 7)
    })))

  it.effect("a claim does not wait for the group commits in flight on other slots", () =>
    Effect.scoped(Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const busy = nextSector++
      // a sector of another slot, in the same range
      const claimed = nextSector++
      assert.notStrictEqual(slotOf(busy), slotOf(claimed))
      assert.strictEqual(rangeKey(slotOf(busy)), rangeKey(slotOf(claimed)))
      const { epoch } = yield* sink.load(busy)
      const { commit, release } = yield* inFlight([[busy, epoch]], 1)
      const claim = yield* Effect.forkChild(sink.load(claimed))
      assert.strictEqual(yield* waitsForFence(claim), "the claim ended")
      assert.strictEqual((yield* Fiber.join(claim)).epoch, 1)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(commit)
    })))

  /** The sectors of slots 0–8 (more than 8 slots: the group locks their ranges, 0–7 and 8–15). */
  const manySlots = (base: number) => Array.from({ length: maxLocks + 1 }, (_, i) => base + i)

  it.effect("a claim waits for a group of many sectors in flight that holds its sector's range", () =>
    Effect.scoped(Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const base = 64 * 1_000
      const group = yield* Effect.forEach(manySlots(base), (s) => Effect.map(sink.load(s), ({ epoch }) => [s, epoch] as const))
      const { commit, release } = yield* inFlight(group, 3)
      // slot 12: not in the group, but in its range 8–15
      const claim = yield* Effect.forkChild(sink.load(base + 12))
      assert.strictEqual(yield* waitsForFence(claim), "the claim waits")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(commit)
      assert.strictEqual((yield* Fiber.join(claim)).epoch, 1)
    })))

  it.effect("a claim does not wait for a group of many sectors in flight outside its sector's range", () =>
    Effect.scoped(Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const base = 64 * 2_000
      const group = yield* Effect.forEach(manySlots(base), (s) => Effect.map(sink.load(s), ({ epoch }) => [s, epoch] as const))
      const { commit, release } = yield* inFlight(group, 3)
      // slot 20: range 16–23
      const claim = yield* Effect.forkChild(sink.load(base + 20))
      assert.strictEqual(yield* waitsForFence(claim), "the claim ended")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(commit)
    })))
})

describe("the claim fence's slots", () => {
  it("a group locks its sectors' slots, or past 8 of them their ranges, once each, ascending, never more than 8", () => {
    fc.assert(fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 1_000 }),
      (sectors) => {
        const locked = locksOf(sectors.map((sectorId) => SinkConformance.batchOf(sectorId, 1, [set(1, 1)])))
        assert.isAtMost(locked.length, maxLocks)
        const fine = [...new Set(sectors.map((s) => slotKey(slotOf(s))))].sort((a, b) => a - b)
        const coarse = [...new Set(sectors.map((s) => rangeKey(slotOf(s))))].sort((a, b) => a - b)
        assert.deepStrictEqual(locked, fine.length <= maxLocks ? fine : coarse)
        // every sector's claim conflicts with the group: it takes both its slot and its range
        for (const s of sectors) assert.isTrue(locked.includes(slotKey(slotOf(s))) || locked.includes(rangeKey(slotOf(s))))
      }
    ))
  })

  it("keeps the slot locks apart from effect's shard locks of the default table prefix", () => {
    // effect's cluster SqlRunnerStorage: classid = FNV-1a of "effect-cluster:<prefix>" (a wire format it keeps)
    let hash = 0x811c9dc5
    for (const byte of new TextEncoder().encode("effect-cluster:cluster")) hash = Math.imul(hash ^ byte, 0x01000193)
    assert.notStrictEqual(hash >>> 0, Migrations.fenceLockClass)
  })
})
