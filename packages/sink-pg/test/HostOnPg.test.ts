/**
 * A whole `SectorHost` on the PostgreSQL sink under load while its connections are terminated again and again:
 * every accepted op ends up durable, exactly as the reference fold.
 */
import { assert, describe, it } from "@effect/vitest"
import { SectorHost, SectorsConfig, SectorSink, SectorState } from "@sectors/core"
import { Arbitraries } from "@sectors/core/testing"
import { Array as Arr, Duration, Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as fc from "fast-check"
import { sinkLayer } from "./support.ts"

const hostOnPg = SectorHost.layer.pipe(
  Layer.provideMerge(sinkLayer()),
  Layer.provide(SectorsConfig.layer({
    retryBase: Duration.millis(5),
    retryDeadline: Duration.seconds(5),
    circuitFailures: 20,
    circuitOpenBase: Duration.millis(100)
  }))
)

describe("a host on the PostgreSQL sink", () => {
  it.live("loses nothing while its connections are terminated again and again under load", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      const sink = yield* SectorSink.SectorSink
      const sql = yield* SqlClient.SqlClient
      const sectors = 8
      const streams = fc.sample(Arbitraries.ops({ entities: 50, hot: 5 }, { min: 200, max: 200 }), sectors)
      let killed = 0
      const killer = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
        yield* Effect.sleep(40)
        const rows = yield* sql<{ n: number }>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE application_name = 'sink-pg-test' AND pid <> pg_backend_pid()`
        killed += rows[0]?.n ?? 0
      }).pipe(Effect.ignore)))
      yield* Effect.forEach(streams, (ops, sectorId) =>
        Effect.forEach(Arr.chunksOf(ops, 7), (chunk) =>
          host.submit(sectorId, chunk, { mailboxWait: Duration.seconds(30) }).pipe(
            Effect.tap(() => Effect.sleep(2))
          ), { discard: true }), { concurrency: "unbounded", discard: true })
      for (let sectorId = 0; sectorId < sectors; sectorId++) yield* host.flush(sectorId)
      yield* Fiber.interrupt(killer)
      assert.isAbove(killed, 0, "the test terminated no connection")
      const report = yield* host.shutdown
      assert.strictEqual(report.unflushed, 0)
      for (let sectorId = 0; sectorId < sectors; sectorId++) {
        const loaded = yield* sink.load(sectorId)
        assert.strictEqual(loaded.persistedSeq, streams[sectorId]!.length)
        assert.deepStrictEqual(SectorState.sortRows(loaded.rows), SectorState.toRows(SectorState.fold(streams[sectorId]!)))
      }
    }).pipe(Effect.provide(hostOnPg)), { timeout: 120_000 })
})
