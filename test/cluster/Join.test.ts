/**
 * A host joining a cluster under load (issue 14, "Handoff"): two hosts carry a load, a third starts on the same
 * database and joins the load's rotation once it listens. It takes a share of the shards — its `GET /cluster` counts
 * them, its `effect_cluster_shards` holds them — and loaded sectors move to it: the two old hosts hand them off
 * (drained, flushed: `sectors_cluster_handoffs_total`) before their shards are released, and the new one claims them
 * after. Not one accepted op is lost: the database is the fold of everything acknowledged, and every host answers the
 * same epoch for each sector.
 *
 * CI adds one host; the soak run starts with two and adds three, one after the other, under a longer load.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as Cluster from "../support/Cluster.ts"
import * as Load from "../support/Load.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const joining = pick(1, 3)
const sectors = pick(24, 64)
/**
 * Ops stay pending (write-behind) for up to 3 s, longer than a shard takes to move: a sector handed off holds ops
 * that only its release's flush makes durable before the next owner claims it. With the default 25 ms they would be
 * flushed anyway before the claim, and a handoff that skipped its flush would go unseen.
 */
const writeBehind = { MAX_WAIT: "3 seconds", MIN_BATCH: "100000", MAX_BATCH: "100000" }

describe("a cluster of two hosts under load", () => {
  it.live(`gives a joining host (${joining}×) shards and sectors, losing no accepted op`, () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const cluster = yield* Cluster.make({ url, hosts: 2, env: writeBehind })
      yield* Effect.promise(() => cluster.settle())
      const history = new Load.History()
      const load = Load.start(cluster.urls, history, { sectors, opsPerRequest: 6, pauseMs: 2, seed: 17, idempotencyKeys: true })
      yield* Effect.sleep(1_500)

      for (let n = 0; n < joining; n++) {
        const before = cluster.running()
        const handoffsBefore = yield* Effect.forEach(before, (h) =>
          Effect.promise(() => Cluster.metricOf(h, "sectors_cluster_handoffs_total")))
        const joinedAt = Date.now()
        const member = yield* Effect.promise(() => cluster.add())
        const held = yield* Effect.promise(() => cluster.settle())
        const settledMs = Date.now() - joinedAt
        yield* Effect.sleep(1_500)
        const joined = yield* Effect.promise(() => Cluster.view(member.host))
        const own = joined.runners.find((r) => r.address === joined.runner)
        const moved = joined.sectors.filter((s) => history.sectors.has(s))
        const handoffsAfter = yield* Effect.forEach(before, (h) =>
          Effect.promise(() => Cluster.metricOf(h, "sectors_cluster_handoffs_total")))
        const handedOff = handoffsAfter.reduce((a, b) => a + b, 0) - handoffsBefore.reduce((a, b) => a + b, 0)
        console.log(`[cluster] host ${before.length + 1} joined under load: settled ${settledMs} ms after it started ` +
          `(shards ${held.join("/")}); ${moved.length} loaded sectors moved to it, ${handedOff} handed off by the others`)
        assert.isAbove(own?.shards ?? 0, 0, `GET /cluster of the new host counts its shards: ${JSON.stringify(joined)}`)
        assert.isAbove(held[held.length - 1]!, 0, "the new host holds shards")
        assert.isAbove(moved.length, 0, "loaded sectors moved to the new host")
        assert.isAbove(handedOff, 0, "the old hosts handed sectors off")
      }
      yield* Effect.promise(load.stop)

      console.log(`[cluster] join: ${history.acceptedOps()} ops accepted; slowest answer ${history.slowest} ms; ` +
        `statuses ${JSON.stringify(Object.fromEntries(history.statuses))}; ${history.replayed} resends answered as replays; ` +
        `lock trouble ${JSON.stringify(Cluster.lockTrouble(cluster))}`)
      assert.strictEqual(history.unanswered, 0, "every request was answered")
      assert.strictEqual(history.missingRetryAfter, 0, `every refusal carries Retry-After: ${history.missingRetryAfterSample.join(" | ")}`)
      const hosts = cluster.running()
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(hosts[hosts.length - 1]!.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      for (const sector of history.sectors.keys()) {
        const epochs = yield* Effect.promise(() => Cluster.epochs(hosts, sector))
        assert.isTrue(epochs.every((e) => e === epochs[0]), `sector ${sector}: epochs ${epochs} from every host`)
      }
      assert.deepStrictEqual(Cluster.fencedLines(cluster), [], "no host had a sector claimed from under it")
    }).pipe(Effect.scoped), { timeout: pick(90_000, 300_000) })
})
