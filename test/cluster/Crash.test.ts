/**
 * SIGKILL of one of three clustered hosts under load where every request asks `ack=durable` (issue 14, "Crash"): the
 * survivors take its sectors over within 10 s (the figure is reported: from the kill until every sector it owned
 * answers again), every op acknowledged as durable is in the database afterwards, and while the shards move every
 * request sent to a survivor gets an answer — success, or 503/429 with `Retry-After` — within its bound
 * (`DURABLE_TIMEOUT` + `FORWARD_TIMEOUT`), never a hang. The load goes through all three hosts; requests in flight to
 * the killed one are unanswered (uncertain: the database decides whether they were applied). It sends an
 * `Idempotency-Key` with every request, as a client of a cluster must: a 503 `sector-unreachable` can mean the owner
 * applied the ops but its answer was lost with it.
 *
 * CI kills once; the soak run kills, restarts and kills again, five times, under a longer load.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as Cluster from "../support/Cluster.ts"
import { call } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const durableTimeoutMs = 3_000
const forwardTimeoutMs = 5_000
/** The longest any answer may take: a durable wait on the owner, plus reaching it, plus slack for a loaded machine. */
const answerBoundMs = durableTimeoutMs + forwardTimeoutMs + 2_000
const kills = pick(1, 5)

describe("a cluster of three hosts under durable load", () => {
  it.live(`loses no durable-acked op when a host is SIGKILLed (${kills}×), its sectors answer again within 10 s, no request hangs`, () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const cluster = yield* Cluster.make({
        url,
        hosts: 3,
        env: { DURABLE_TIMEOUT: `${durableTimeoutMs} millis`, FORWARD_TIMEOUT: `${forwardTimeoutMs} millis` }
      })
      yield* Effect.promise(() => cluster.settle())
      const history = new Load.History()
      const load = Load.start(cluster.urls, history, { sectors: 24, opsPerRequest: 6, pauseMs: 2, durableEvery: 1, seed: 15, idempotencyKeys: true })
      const takeovers: Array<number> = []
      for (let round = 0; round < kills; round++) {
        yield* Effect.sleep(2_000)
        const victim = 2 - (round % 3)
        // a host restarted in an earlier round gets its sectors back as the load reaches them: wait for some
        const ownedBy = Effect.promise(async () =>
          (await Cluster.view(cluster.members[victim]!.host)).sectors.filter((s) => history.sectors.has(s))
        )
        let owned = yield* ownedBy
        for (const until = Date.now() + 15_000; owned.length === 0 && Date.now() < until;) {
          yield* Effect.sleep(200)
          owned = yield* ownedBy
        }
        assert.isAbove(owned.length, 0, "the host to kill owns some of the loaded sectors")
        const survivors = cluster.running().filter((h) => h !== cluster.members[victim]!.host)
        const acceptedBefore = history.acceptedOps()
        cluster.exclude(victim, true)
        const killedAt = Date.now()
        yield* Effect.promise(() => cluster.kill(victim))

        // every sector of the dead host answers again from the survivors: until then 503 with Retry-After
        const answered = yield* Effect.forEach(owned, (sector, i) =>
          Effect.promise(async () => {
            while (true) {
              const reply = await call(survivors[i % survivors.length]!.baseUrl, "GET", `/sectors/${sector}`)
              if (reply.status === 200) return Date.now() - killedAt
              assert.strictEqual(reply.status, 503, JSON.stringify(reply.body))
              assert.isNotNull(reply.headers.get("retry-after"))
              if (Date.now() - killedAt > 30_000) throw new Error(`sector ${sector} not back within 30 s: ${JSON.stringify(reply.body)}`)
            }
          }), { concurrency: "unbounded" })
        const takeover = Math.max(...answered)
        takeovers.push(takeover)
        yield* Effect.sleep(1_000)
        console.log(`[cluster] SIGKILL under durable load: ${owned.length} sectors of the killed host answered again after ` +
          `${takeover} ms (first ${Math.min(...answered)} ms); ${history.acceptedOps() - acceptedBefore} ops acknowledged since the kill`)
        assert.isAbove(history.acceptedOps(), acceptedBefore, "the load went on through the survivors")
        assert.isBelow(takeover, 10_000, "takeover within 10 s")
        if (round + 1 < kills) {
          yield* Effect.promise(() => cluster.restart(victim))
          yield* Effect.promise(() => cluster.settle())
          cluster.exclude(victim, false)
        }
      }
      yield* Effect.promise(load.stop)

      const statuses = Object.fromEntries(history.statuses)
      console.log(`[cluster] durable load over the kills: statuses ${JSON.stringify(statuses)}; slowest answer ` +
        `${history.slowest} ms; refusals ${JSON.stringify(Object.fromEntries(history.refusals))}; ${history.replayed} resends ` +
        `answered as replays; ${history.unanswered} requests in flight to a killed host unanswered`)
      const reused = Verify.reusedSeqs(history)
      assert.deepStrictEqual(reused.filter((r) => r.durable), [], "no op acknowledged as durable was lost (its seqs given again)")
      const settled = yield* Effect.promise(() => Verify.settle(url, history, Date.now()))
      assert.deepStrictEqual(settled.durableMissing, [], "every op acknowledged as durable is in the database")
      // every acknowledgement was durable (200) or a durable wait that timed out (504): only those may be missing
      const timedOut = history.statuses.get(504) ?? 0
      assert.isAtMost(settled.lost.length, timedOut, `lost ${JSON.stringify(settled.lost)}`)
      assert.isBelow(history.slowest, answerBoundMs, "every request was answered within its bound")
      assert.strictEqual(history.missingRetryAfter, 0, `every refusal carries Retry-After: ${history.missingRetryAfterSample.join(" | ")}`)
      assert.isAtMost(history.unanswered, 24, "only requests in flight to the killed host went unanswered")
      const others = Object.keys(statuses).map(Number).filter((s) => ![200, 429, 503, 504].includes(s))
      assert.deepStrictEqual(others, [], "answers are 200, or refusals with Retry-After")

      const survivor = cluster.running()[0]!
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(survivor.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      for (const sector of history.sectors.keys()) {
        const epochs = yield* Effect.promise(() => Cluster.epochs(cluster.running(), sector))
        assert.isTrue(epochs.every((e) => e === epochs[0]), `sector ${sector}: epochs ${epochs} from the survivors`)
      }
      assert.deepStrictEqual(Cluster.fencedLines(cluster), [], "no host had a sector claimed from under it")
    }).pipe(Effect.scoped), { timeout: pick(90_000, 400_000) })
})
