/**
 * Two hosts on one database claiming the same sector. Every activation claims the sector by bumping its epoch, and
 * a batch is written only under the epoch it was loaded with, so a stale owner cannot write after a newer one has
 * claimed: its batch is rejected (`Fenced`), it stops, the ops it held unpersisted are given up (and logged), and
 * the data is the new owner's. Calling the stale host again reloads the sector — a claim of its own — so ownership
 * can move back and forth without two owners ever interleaving writes.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Op } from "@sectors/core"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import { call, type Host, scoped, waitForOutput } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { metric, scrape } from "../support/Observe.ts"
import * as Verify from "../support/Verify.ts"

const ops = (tag: string, count: number, entities = 7): Array<Op.Op> =>
  Array.from({ length: count }, (_, i) => ({ type: "set", entity: i % entities, component: `c${i % 3}`, data: { tag, i } }))

/** Records a request whose ops are known durable at `firstSeq`. */
const record = (history: Load.History, sector: number, list: ReadonlyArray<Op.Op>, firstSeq: number) =>
  history.sector(sector).acked.push({ ops: list, firstSeq, lastSeq: firstSeq + list.length - 1, durable: true, at: Date.now() })

describe("two hosts claiming one sector", () => {
  it.live("fences the stale owner; the data is the new owner's", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      // A holds what it accepts until asked to flush; B is an ordinary host
      const a = yield* scoped({ DATABASE_URL: url, MIN_BATCH: "1000", MAX_BATCH: "1000", MAX_WAIT: "10 minutes" })
      const b = yield* scoped({ DATABASE_URL: url })
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

      // B claims the sector: it loads what is durable (a1) and goes on from there
      const b1 = ops("b1", 12)
      const claimed = yield* Effect.promise(() => call(b.baseUrl, "POST", `/sectors/${sector}/ops?ack=durable`, { ops: b1 }))
      assert.strictEqual(claimed.status, 200, JSON.stringify(claimed.body))
      assert.deepStrictEqual([claimed.body.firstSeq, claimed.body.lastSeq], [21, 32])
      record(history, sector, b1, 21)

      // A tries to write what it held: fenced
      const stale = yield* Effect.promise(() => call(a.baseUrl, "POST", `/sectors/${sector}/flush`))
      assert.strictEqual(stale.status, 503, JSON.stringify(stale.body))
      assert.strictEqual(stale.body.type, "urn:sectors:problem:sector-fenced")
      assert.isNotNull(stale.headers.get("retry-after"))
      yield* Effect.promise(() => waitForOutput(a, `sector ${sector}: claimed by another owner; 15 accepted ops were not persisted`))
      assert.isAtLeast(metric(yield* Effect.promise(() => scrape(a.baseUrl)), "sectors_persist_failures_total", { reason: "Fenced" }), 1)

      // the data is B's: a1 then b1, nothing of a2
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(b.baseUrl, history)), [])
    }), { timeout: 90_000 })

  it.live("ownership moving back and forth under writes never interleaves two owners", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const hosts: ReadonlyArray<Host> = [yield* scoped({ DATABASE_URL: url }), yield* scoped({ DATABASE_URL: url })]
      const sector = 6
      const history = new Load.History()
      let fencedAnswers = 0
      let lost = 0
      for (let turn = 0; turn < 16; turn++) {
        const host = hosts[turn % 2]!
        const list = ops(`turn-${turn}`, 5 + turn, 11)
        // a stale owner accepts into memory (it cannot know yet), learns it was fenced when it writes, and the
        // next call reloads the sector under a new claim
        for (let attempt = 0; ; attempt++) {
          assert.isBelow(attempt, 4, `turn ${turn}: the host never took the sector back`)
          const posted = yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${sector}/ops`, { ops: list }))
          if (posted.status === 503) {
            assert.strictEqual(posted.body.type, "urn:sectors:problem:sector-fenced")
            fencedAnswers++
            continue
          }
          assert.strictEqual(posted.status, 202, JSON.stringify(posted.body))
          const flushed = yield* Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${sector}/flush`))
          if (flushed.status === 503) {
            assert.strictEqual(flushed.body.type, "urn:sectors:problem:sector-fenced")
            fencedAnswers++
            lost += list.length
            continue
          }
          assert.strictEqual(flushed.status, 200, JSON.stringify(flushed.body))
          assert.strictEqual(posted.body.firstSeq, history.nextSeq(sector), "the new owner goes on from the durable watermark")
          record(history, sector, list, posted.body.firstSeq)
          break
        }
      }
      console.log(`[fencing] 16 hand-overs: ${fencedAnswers} fenced answers, ${lost} ops accepted by a stale owner and given up`)
      assert.isAtLeast(fencedAnswers, 15, "every hand-over fenced the previous owner")
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(hosts[1]!.baseUrl, history)), [])
    }), { timeout: 90_000 })
})
