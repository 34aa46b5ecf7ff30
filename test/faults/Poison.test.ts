/**
 * A poison op — data the database refuses (here: a CHECK constraint added to the live schema) — arrives in the
 * middle of a busy sector while other sectors share its group commits. The batch is rejected, the sector isolates
 * the one entry at fault, dead-letters it with the database's error, and commits the rest under the same seq range;
 * the other sectors' batches commit as usual. The dead letter is counted in the metrics and served by the API, and
 * the sector's memory is brought back in line with what is durable.
 */
import { assert, describe, it } from "@effect/vitest"
import { type Op, SectorState } from "@sectors/core"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import postgres from "postgres"
import { call, scoped } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { metric, scrape } from "../support/Observe.ts"
import * as Verify from "../support/Verify.ts"

const busySector = 500
const poisonAt = { request: 14, index: 4 }
const poison: Op.Op = { type: "set", entity: 999, component: "mood", data: { poison: true } }

describe("a poison op in a busy batch", () => {
  it.live("is dead-lettered with its error, counted and reported; everything else commits", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const host = yield* scoped({ DATABASE_URL: url })
      // the database starts refusing a kind of data the API accepts
      yield* Effect.promise(async () => {
        const sql = postgres(url, { max: 1, onnotice: () => {} })
        await sql`ALTER TABLE entity_components ADD CONSTRAINT no_poison CHECK (NOT (data ? 'poison'))`
        await sql.end()
      })

      const history = new Load.History()
      const load = Load.start(host.baseUrl, history, { sectors: 12, opsPerRequest: 10, pauseMs: 1, durableEvery: 5 })

      // the busy sector: 30 requests of 10 ops sent back to back, one poison op in the middle
      const ops: Array<Op.Op> = []
      for (let request = 0; request < 30; request++) {
        const batch: Array<Op.Op> = Array.from({ length: 10 }, (_, i) => ({
          type: "set",
          entity: (request * 10 + i) % 37,
          component: i % 2 === 0 ? "position" : "hp",
          data: { request, i }
        }))
        if (request === poisonAt.request) batch[poisonAt.index] = poison
        const answer = yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${busySector}/ops`, { ops: batch }))
        assert.strictEqual(answer.status, 202, JSON.stringify(answer.body))
        ops.push(...batch)
      }
      const poisonSeq = poisonAt.request * 10 + poisonAt.index + 1

      const flushed = yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${busySector}/flush`))
      assert.strictEqual(flushed.status, 200, JSON.stringify(flushed.body))
      assert.strictEqual(flushed.body.persistedSeq, ops.length, "the watermark passes the poison op")
      yield* Effect.promise(load.stop)

      // the API reports it, with the database's error
      const letters = yield* Effect.promise(() => call(host.baseUrl, "GET", `/sectors/${busySector}/dead-letters`))
      assert.strictEqual(letters.status, 200)
      assert.strictEqual(letters.body.deadLetters.length, 1, JSON.stringify(letters.body))
      const [letter] = letters.body.deadLetters
      assert.strictEqual(letter.seq, poisonSeq)
      assert.deepStrictEqual(letter.entry, poison)
      assert.strictEqual(letter.code, "23514", "check_violation")
      assert.include(letter.error, "no_poison")
      // …counts it…
      const text = yield* Effect.promise(() => scrape(host.baseUrl))
      assert.strictEqual(metric(text, "sectors_dead_letters_total"), 1)
      // …and keeps it in the database
      const stored = yield* Effect.promise(async () => {
        const sql = postgres(url, { max: 1, onnotice: () => {} })
        const rows = await sql<Array<{ seq: string; code: string }>>`SELECT seq, code FROM dead_letters WHERE sector_id = ${busySector}`
        await sql.end()
        return rows.map((r) => ({ seq: Number(r.seq), code: r.code }))
      })
      assert.deepStrictEqual(stored, [{ seq: poisonSeq, code: "23514" }])

      // the rest of the busy sector is durable: every op but the poison one, at its own seq
      const state = SectorState.make()
      ops.forEach((op, i) => i + 1 !== poisonSeq && SectorState.apply(state, op, i + 1))
      const [durable] = (yield* Effect.promise(() => Verify.readSectors(url, [busySector]))).values()
      assert.strictEqual(durable!.persistedSeq, ops.length)
      assert.deepStrictEqual(durable!.rows, SectorState.toRows(state))
      // memory agrees with the database again: the poison component is not served
      const entity = yield* Effect.promise(() => call(host.baseUrl, "GET", `/sectors/${busySector}/entities/${poison.entity}`))
      assert.strictEqual(entity.status, 404, JSON.stringify(entity.body))

      // the sectors that shared its group commits lost nothing
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(host.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      console.log(
        `[poison] seq ${poisonSeq} of ${ops.length} dead-lettered (${letter.code}: ${letter.error}); ` +
          `${history.sectors.size} neighbouring sectors, ${[...history.sectors.values()].reduce((n, s) => n + s.acked.length, 0)} requests, all durable`
      )
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0)
    }), { timeout: 90_000 })
})
