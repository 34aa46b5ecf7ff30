/**
 * Two owners of one sector on one database. Every activation claims the sector by bumping its epoch, and a batch is
 * written only under the epoch it was loaded with, so a stale owner cannot write after a newer one has claimed: its
 * batch is rejected (`Fenced`), it stops, the ops it held unpersisted are given up (and logged), and the data is the
 * new owner's. Calling the stale host again reloads the sector — a claim of its own — so ownership can move back and
 * forth without two owners ever interleaving writes.
 *
 * The host (A) is a real process. A second standalone host on its database would be refused at start
 * (`e2e/OneHostPerDatabase.test.ts`), so the other owner is this test process: it claims the sector through the sink
 * as a host's activation does (`sink.load`, epoch + 1) and persists batches under that claim — the statements
 * another host would send. Fencing is the database's check, whoever the owners are.
 */
import { assert, describe, it } from "@effect/vitest"
import { type Op, SectorSink } from "@sectors/core"
import { SinkConformance } from "@sectors/core/testing"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { SinkPg } from "@sectors/sink-pg"
import { Cause, Context, Effect, Exit, Layer, Option, Redacted } from "effect"
import { call, scoped, waitForOutput } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { metric, scrape } from "../support/Observe.ts"
import * as Verify from "../support/Verify.ts"

const ops = (tag: string, count: number, entities = 7): Array<Op.Op> =>
  Array.from({ length: count }, (_, i) => ({ type: "set", entity: i % entities, component: `c${i % 3}`, data: { tag, i } }))

/** Records a request whose ops are known durable at `firstSeq`. */
const record = (history: Load.History, sector: number, list: ReadonlyArray<Op.Op>, firstSeq: number) =>
  history.sector(sector).acked.push({ ops: list, firstSeq, lastSeq: firstSeq + list.length - 1, durable: true, at: Date.now() })

/** The other owner: the sink on `url`, in this process (it is no host and takes no host lock). */
const otherOwner = (url: string) =>
  Effect.map(
    Layer.build(SinkPg.layer(Redacted.make(url), { client: { maxConnections: 2, applicationName: "fencing-test-owner" } })),
    (context) => Context.get(context, SectorSink.SectorSink)
  )

/** The other owner's claim of a sector: the epoch it loaded, and the seq its next batch starts at. */
interface Claim {
  readonly epoch: number
  next: number
}

/** Claims `sector` as the other owner, as a host's activation does: epoch + 1, going on from the durable watermark. */
const claim = (sink: SectorSink.SectorSink["Service"], sector: number) =>
  Effect.map(sink.load(sector), (loaded): Claim => ({ epoch: loaded.epoch, next: loaded.persistedSeq + 1 }))

describe("two owners claiming one sector", () => {
  it.live("fences the stale owner; the data is the new owner's", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      // A holds what it accepts until asked to flush
      const a = yield* scoped({ DATABASE_URL: url, MIN_BATCH: "1000", MAX_BATCH: "1000", MAX_WAIT: "10 minutes" })
      const sink = yield* otherOwner(url)
      const sector = 5
      const history = new Load.History()

      const a1 = ops("a1", 20)
      assert.strictEqual((yield* Effect.promise(() => call(a.baseUrl, "POST", `/sectors/${sector}/ops`, { ops: a1 }))).status, 202)
      const flushed = yield* Effect.promise(() => call(a.baseUrl, "POST", `/sectors/${sector}/flush`))
      assert.deepStrictEqual(flushed.body, { sector, persistedSeq: 20 })
      record(history, sector, a1, 1)

      // A accepts more, still only in memory
      const a2 = ops("a2", 15)
      const held = yield* Effect.promise(() => call(a.baseUrl, "POST", `/sectors/${sector}/ops`, { ops: a2 }))
      assert.strictEqual(held.status, 202)

      // the other owner claims the sector: it loads what is durable (a1) and goes on from there
      const b = yield* claim(sink, sector)
      assert.strictEqual(b.next, 21)
      const b1 = ops("b1", 12)
      yield* sink.persist(SinkConformance.batchOf(sector, b.epoch, b1, b.next))
      record(history, sector, b1, 21)

      // A tries to write what it held: fenced
      const stale = yield* Effect.promise(() => call(a.baseUrl, "POST", `/sectors/${sector}/flush`))
      assert.strictEqual(stale.status, 503, JSON.stringify(stale.body))
      assert.strictEqual(stale.body.type, "urn:sectors:problem:sector-fenced")
      assert.isNotNull(stale.headers.get("retry-after"))
      yield* Effect.promise(() => waitForOutput(a, `sector ${sector}: claimed by another owner; 15 accepted ops were not persisted`))
      assert.isAtLeast(metric(yield* Effect.promise(() => scrape(a.baseUrl)), "sectors_persist_failures_total", { reason: "Fenced" }), 1)

      // the data is the new owner's: a1 then b1, nothing of a2
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      // A drops the fenced instance: a read is answered from the database (the new owner's data, not A's stale
      // memory), and the next write reloads the sector (a claim of its own) and goes on after b1
      const read = yield* Effect.promise(() => call(a.baseUrl, "GET", `/sectors/${sector}/entities/0`))
      assert.strictEqual(read.status, 200)
      assert.strictEqual(read.body.components.c0.tag, "b1", JSON.stringify(read.body))
      const a3 = ops("a3", 6)
      const again = yield* Effect.promise(() => call(a.baseUrl, "POST", `/sectors/${sector}/ops`, { ops: a3 }))
      assert.strictEqual(again.status, 202, JSON.stringify(again.body))
      assert.deepStrictEqual([again.body.firstSeq, again.body.lastSeq], [33, 38])
      const written = yield* Effect.promise(() => call(a.baseUrl, "POST", `/sectors/${sector}/flush`))
      assert.deepStrictEqual(written.body, { sector, persistedSeq: 38 })
      record(history, sector, a3, 33)
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(a.baseUrl, history)), [])
      // and the other owner, stale in its turn, is fenced too
      const late = yield* Effect.exit(sink.persist(SinkConformance.batchOf(sector, b.epoch, ops("b2", 3), 33)))
      assert.strictEqual(Exit.isFailure(late) ? Option.getOrUndefined(Cause.findErrorOption(late.cause))?.reason : "persisted", "Fenced")
    }), { timeout: 90_000 })

  it.live("ownership moving back and forth under writes never interleaves two owners", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const host = yield* scoped({ DATABASE_URL: url })
      const sink = yield* otherOwner(url)
      const sector = 6
      const history = new Load.History()
      // both have owned the sector before the first turn (the host by a first write: a claim), so that every one
      // of the 16 turns takes it from an owner that has gone stale; the host has the last turn
      let owned: Claim = yield* claim(sink, sector)
      const first = ops("first", 3)
      assert.strictEqual((yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${sector}/ops`, { ops: first }))).status, 202)
      assert.strictEqual((yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${sector}/flush`))).status, 200)
      record(history, sector, first, 1)
      let fencedAnswers = 0
      let fencedTurns = 0
      let lost = 0
      for (let turn = 0; turn < 16; turn++) {
        const list = ops(`turn-${turn}`, 5 + turn, 11)
        let fenced = false
        if (turn % 2 === 1) {
          // the host: a stale owner accepts into memory (it cannot know yet), learns it was fenced when it writes,
          // and the next call reloads the sector under a new claim
          for (let attempt = 0; ; attempt++) {
            assert.isBelow(attempt, 4, `turn ${turn}: the host never took the sector back`)
            const posted = yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${sector}/ops`, { ops: list }))
            if (posted.status === 503) {
              assert.strictEqual(posted.body.type, "urn:sectors:problem:sector-fenced")
              fencedAnswers++
              fenced = true
              continue
            }
            assert.strictEqual(posted.status, 202, JSON.stringify(posted.body))
            const flushed = yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${sector}/flush`))
            if (flushed.status === 503) {
              assert.strictEqual(flushed.body.type, "urn:sectors:problem:sector-fenced")
              fencedAnswers++
              fenced = true
              lost += list.length
              continue
            }
            assert.strictEqual(flushed.status, 200, JSON.stringify(flushed.body))
            assert.strictEqual(posted.body.firstSeq, history.nextSeq(sector), "the new owner goes on from the durable watermark")
            record(history, sector, list, posted.body.firstSeq)
            break
          }
        } else {
          // the other owner: writes under its old claim, is fenced, claims again and writes
          for (let attempt = 0; ; attempt++) {
            assert.isBelow(attempt, 4, `turn ${turn}: the other owner never took the sector back`)
            const exit = yield* Effect.exit(sink.persist(SinkConformance.batchOf(sector, owned.epoch, list, owned.next)))
            if (Exit.isFailure(exit)) {
              assert.strictEqual(Option.getOrUndefined(Cause.findErrorOption(exit.cause))?.reason, "Fenced", String(exit))
              fencedAnswers++
              fenced = true
              owned = yield* claim(sink, sector)
              continue
            }
            assert.strictEqual(owned.next, history.nextSeq(sector), "the new owner goes on from the durable watermark")
            record(history, sector, list, owned.next)
            owned.next += list.length
            break
          }
        }
        if (fenced) fencedTurns++
      }
      console.log(
        `[fencing] 16 hand-overs: ${fencedTurns} fenced the previous owner; ${fencedAnswers} fenced answers, ${lost} ops ` +
          `accepted by the stale host and given up`
      )
      assert.strictEqual(fencedTurns, 16, "every hand-over fenced the previous owner")
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      // the host, the last owner, serves what the two owners made durable, in order
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(host.baseUrl, history)), [])
    }), { timeout: 90_000 })
})
