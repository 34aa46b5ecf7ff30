/**
 * The PostgreSQL sink against a real server: random op streams equal the reference fold, group commit, isolation of
 * a data error, fencing, error classes, connections lost mid-statement; and migrations run from two hosts at once.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { type Op, SectorSink, SectorState } from "@sectors/core"
import { Arbitraries, SinkConformance } from "@sectors/core/testing"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Cause, Effect, Exit, Fiber, Metric, Option } from "effect"
import { SqlClient } from "effect/sql"
import * as fc from "fast-check"
import { Migrations, SinkPg } from "../src/index.ts"
import { database, sinkLayer } from "./support.ts"

let nextSector = 1
const loadRows = (sink: SectorSink.SectorSink["Service"], sectorId: number) =>
  Effect.map(sink.load(sectorId), (loaded) => SectorState.sortRows(loaded.rows))

layer(sinkLayer(), { excludeTestServices: true })("SinkPg on a real PostgreSQL", (it) => {
  it.effect("persists random op streams, split into random batches, exactly as the reference fold", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            Arbitraries.ops({ entities: 30, hot: 4 }, { min: 1, max: 200 }),
            fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 6 }),
            async (ops, cuts) => {
              const sectorId = nextSector++
              await Effect.runPromise(Effect.gen(function*() {
                const { epoch } = yield* sink.load(sectorId)
                const bounds = [...new Set([0, ...cuts.filter((c) => c < ops.length), ops.length])].sort((a, b) => a - b)
                for (let i = 0; i + 1 < bounds.length; i++) {
                  yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, ops.slice(bounds[i], bounds[i + 1]), bounds[i]! + 1))
                }
                const rows = yield* loadRows(sink, sectorId)
                assert.deepStrictEqual(rows, SectorState.toRows(SectorState.fold(ops)))
              }))
            }
          ),
          { numRuns: 60 }
        )
      )
    }), { timeout: 120_000 })

  it.effect("shares one transaction among batches of many sectors that are ready at once", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectors = Array.from({ length: 40 }, () => nextSector++)
      const epochs = yield* Effect.forEach(sectors, (id) => Effect.map(sink.load(id), (l) => l.epoch))
      const before = (yield* Metric.value(SinkPg.transactions)).count
      yield* Effect.forEach(
        sectors,
        (id, i) => sink.persist(SinkConformance.batchOf(id, epochs[i]!, [{ type: "set", entity: 1, component: "a", data: { id } }])),
        { concurrency: "unbounded" }
      )
      const transactions = (yield* Metric.value(SinkPg.transactions)).count - before
      assert.isAtLeast(transactions, 1, "the transactions counter counted the commits")
      assert.isAtMost(transactions, 10, `${transactions} transactions for 40 batches`)
      for (const id of sectors) {
        assert.deepStrictEqual((yield* loadRows(sink, id)).components.map((r) => r.data), [{ id }])
      }
    }))

  it.effect("isolates a data error in a group to its own sector; the others commit", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectors = Array.from({ length: 8 }, () => nextSector++)
      const epochs = yield* Effect.forEach(sectors, (id) => Effect.map(sink.load(id), (l) => l.epoch))
      const poisoned = sectors[3]!
      const exits = yield* Effect.forEach(
        sectors,
        (id, i) => {
          // a NUL character is rejected by jsonb (22P05); Op.decodeOps never lets one in, a custom caller might
          const data = id === poisoned ? { s: "bad\u0000" } : { ok: id }
          const batch = SinkConformance.batchOf(id, epochs[i]!, [{ type: "set", entity: 1, component: "a", data } as Op.Op])
          return Effect.exit(sink.persist(batch))
        },
        { concurrency: "unbounded" }
      )
      sectors.forEach((id, i) => {
        const exit = exits[i]!
        if (id === poisoned) {
          const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : Option.none()
          assert.strictEqual(Option.getOrUndefined(error)?.reason, "Rejected")
        } else assert.isTrue(Exit.isSuccess(exit), String(exit))
      })
      const verify = yield* Effect.flip(sink.verify(SinkConformance.batchOf(poisoned, epochs[3]!, [{ type: "set", entity: 1, component: "a", data: { s: "x\u0000" } }])))
      assert.strictEqual(verify.reason, "Rejected")
      assert.strictEqual(verify.code, "22P05")
      // the server's own words, not the driver's "Query failed"
      assert.include(verify.message, "unsupported Unicode escape sequence")
    }))

  it.effect("fences a stale owner: after another host claims the sector nothing the stale one writes lands", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sectorId = nextSector++
      const hostA = yield* sink.load(sectorId)
      yield* sink.persist(SinkConformance.batchOf(sectorId, hostA.epoch, [{ type: "set", entity: 1, component: "a", data: { owner: "A" } }]))
      const hostB = yield* sink.load(sectorId)
      assert.strictEqual(hostB.epoch, hostA.epoch + 1)
      const late = yield* Effect.flip(sink.persist(SinkConformance.batchOf(sectorId, hostA.epoch, [
        { type: "set", entity: 1, component: "a", data: { owner: "A-late" } },
        { type: "delete", entity: 2 }
      ], 2)))
      assert.strictEqual(late.reason, "Fenced")
      yield* sink.persist(SinkConformance.batchOf(sectorId, hostB.epoch, [{ type: "set", entity: 2, component: "a", data: { owner: "B" } }], 2))
      const rows = yield* loadRows(sink, sectorId)
      assert.deepStrictEqual(rows.components.map((r) => [r.entity, r.data]), [[1, { owner: "A" }], [2, { owner: "B" }]])
    }))

  it.effect("classifies a missing table as Fatal, not as the data's fault", () =>
    Effect.gen(function*() {
      const sink = yield* SectorSink.SectorSink
      const sql = yield* SqlClient.SqlClient
      const sectorId = nextSector++
      const { epoch } = yield* sink.load(sectorId)
      yield* sql`ALTER TABLE entity_authority RENAME TO entity_authority_away`
      const error = yield* Effect.flip(sink.persist(SinkConformance.batchOf(sectorId, epoch, [{ type: "authority", entity: 1, component: "a", worker: "w" }])))
      yield* sql`ALTER TABLE entity_authority_away RENAME TO entity_authority`
      assert.strictEqual(error.reason, "Fatal")
      assert.strictEqual(error.code, "42P01")
    }))

  // an upsert-only batch is one statement; a removal makes it a transaction, where the driver reports the lost
  // connection as a defect that the sink must turn back into a failure
  for (const [path, ops] of [
    ["its single statement", [{ type: "set", entity: 1, component: "a", data: { v: 1 } }]],
    ["its transaction", [{ type: "set", entity: 1, component: "a", data: { v: 1 } }, { type: "remove", entity: 2, component: "a" }]]
  ] as const satisfies ReadonlyArray<readonly [string, ReadonlyArray<Op.Op>]>) {
    it.effect(`retries a batch whose connection was terminated in ${path} and loses nothing`, () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink.SectorSink
        const sql = yield* SqlClient.SqlClient
        const sectorId = nextSector++
        const { epoch } = yield* sink.load(sectorId)
        // hold the sector row so the batch's transaction waits, then terminate that session
        const blocker = yield* Effect.forkChild(sql.withTransaction(Effect.andThen(
          sql`SELECT 1 FROM sectors WHERE sector_id = ${sectorId} FOR UPDATE`,
          Effect.sleep(300)
        )))
        yield* Effect.sleep(50)
        const attempt = yield* Effect.forkChild(Effect.exit(sink.persist(SinkConformance.batchOf(sectorId, epoch, ops))))
        yield* Effect.sleep(100)
        const killed = yield* sql<{ n: number }>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE application_name = 'sink-pg-test' AND query LIKE '%pg_advisory_xact_lock_shared%' AND pid <> pg_backend_pid()`
        assert.strictEqual(killed[0]?.n, 1)
        const failure = yield* Fiber.join(attempt)
        yield* Fiber.await(blocker)
        const error = Exit.isFailure(failure) ? Cause.findErrorOption(failure.cause) : Option.none()
        assert.strictEqual(Option.getOrUndefined(error)?.reason, "Transient")
        // the runtime retries: the same batch again commits once
        yield* sink.persist(SinkConformance.batchOf(sectorId, epoch, ops))
        assert.deepStrictEqual((yield* loadRows(sink, sectorId)).components.map((r) => r.data), [{ v: 1 }])
      }))
  }
})

describe("Migrations", () => {
  it.live("are safe to run from two hosts at once on a fresh database", () =>
    Effect.gen(function*() {
      const { url } = yield* PgEmbedded.DatabaseUrl
      const client = (name: string) => PgClient.layer({ url, maxConnections: 2, applicationName: name })
      const runs = yield* Effect.all(
        [Migrations.run.pipe(Effect.provide(client("a"))), Migrations.run.pipe(Effect.provide(client("b")))],
        { concurrency: 2 }
      )
      // one run applied every migration, the other waited and found nothing left
      assert.deepStrictEqual(runs.map((ran) => ran.length).sort(), [0, Object.keys(Migrations.migrations).length])
      const again = yield* Migrations.run.pipe(Effect.provide(client("c")))
      assert.deepStrictEqual(again, [])
    }).pipe(Effect.provide(database)))
})
