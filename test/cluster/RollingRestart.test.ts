/**
 * A rolling restart of three clustered hosts under load (issue 14, "Handoff"): each host in turn is taken out of the
 * load's rotation (as a load balancer does with a stopping pod), gets SIGTERM, leaves the cluster — every sector it
 * owns drains and flushes before its shard is released — exits 0, starts again on the same ports, and the shards
 * settle before the next one goes. Requests for its sectors keep arriving through the other hosts all along. Afterwards
 * not one accepted op is lost: the database is the fold of everything acknowledged, every host serves it, and every
 * host answers the same epoch for each sector.
 *
 * Reported: each host's handoff time (its "left the cluster in N ms" line), the slowest single answer, and the longest
 * stall a sector saw — the largest gap between two acknowledgements of one sector while the hosts restarted, refused
 * and retried requests included. The goal is under 2 s beyond the flush itself; the bound asserted is generous
 * (see `stallBoundMs`), the figure is what to read. The load sends an `Idempotency-Key` with every request: a request
 * its owner was interrupted in (a forced release) is answered 503 and may have been applied.
 *
 * CI restarts the three hosts once; the soak run three times over, under more sectors.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as Cluster from "../support/Cluster.ts"
import * as Load from "../support/Load.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const rounds = pick(1, 3)
const sectors = pick(24, 64)
/**
 * Ops stay pending (write-behind) for up to 3 s, longer than a shard takes to move: a sector handed off holds ops
 * that only its release's flush makes durable before the next owner claims it. With the default 25 ms they would be
 * flushed anyway before the claim, and a handoff that skipped its flush would go unseen.
 */
const writeBehind = { MAX_WAIT: "3 seconds", MIN_BATCH: "100000", MAX_BATCH: "100000" }
/**
 * The goal is 2 s beyond the flush; a handoff here stalls a sector 1.4-2.1 s. The bound leaves room for a loaded 2-core
 * machine running other test files: with lock operations allowed 1 s (`min(SHARD_LOCK_REFRESH_INTERVAL, expiration /
 * 3)`, the defaults before), releases and acquisitions timed out while shards moved and stalls of 8.6-11.5 s were
 * seen about one run in five; with the 2 s of today's defaults none was (`Cluster.lockTrouble` reports such trouble).
 */
const stallBoundMs = 8_000

describe("a cluster of three hosts under load", () => {
  it.live(`restarted host by host (${rounds}×) loses no accepted op; the longest stall stays under ${stallBoundMs / 1000} s`, () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const cluster = yield* Cluster.make({ url, hosts: 3, env: writeBehind })
      yield* Effect.promise(() => cluster.settle())
      const history = new Load.History()
      const load = Load.start(cluster.urls, history, { sectors, opsPerRequest: 6, pauseMs: 5, seed: 16, idempotencyKeys: true })
      yield* Effect.sleep(1_500)

      const restartsFrom = Date.now()
      const handoffs: Array<string> = []
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < 3; i++) {
          const acceptedBefore = history.acceptedOps()
          cluster.exclude(i, true)
          yield* Effect.sleep(100) // requests already sent to it are answered before it stops listening
          const stopped = yield* Effect.promise(() => cluster.stop(i))
          assert.strictEqual(stopped.code, 0, cluster.members[i]!.host.output().slice(-3_000))
          assert.isDefined(stopped.handoffMs, "the host logged its handoff")
          const restartedAt = Date.now()
          yield* Effect.promise(() => cluster.restart(i))
          yield* Effect.promise(() => cluster.settle())
          handoffs.push(`host ${i}: handoff ${stopped.handoffMs} ms, back and settled ${Date.now() - restartedAt} ms`)
          cluster.exclude(i, false)
          yield* Effect.sleep(500)
          assert.isAbove(history.acceptedOps(), acceptedBefore, `the load went on while host ${i} restarted`)
        }
      }
      const restartsTo = Date.now()
      yield* Effect.sleep(500)
      yield* Effect.promise(load.stop)

      const stall = history.longestStall(restartsFrom, restartsTo)
      console.log(`[cluster] rolling restart (${rounds}×3) under load: ${handoffs.join("; ")}; longest stall ${stall.ms} ms ` +
        `(sector ${stall.sector}); slowest answer ${history.slowest} ms; ${history.acceptedOps()} ops accepted; ` +
        `statuses ${JSON.stringify(Object.fromEntries(history.statuses))}; refusals ${JSON.stringify(Object.fromEntries(history.refusals))}; ` +
        `${history.replayed} resends answered as replays; refused connections ${history.refusedConnections}; lock trouble ` +
        `${JSON.stringify(Cluster.lockTrouble(cluster))}`)
      assert.strictEqual(history.unanswered, 0, "every request was answered")
      assert.strictEqual(history.missingRetryAfter, 0, `every refusal carries Retry-After: ${history.missingRetryAfterSample.join(" | ")}`)
      const hosts = cluster.running()
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(hosts[0]!.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(hosts[1]!.baseUrl, history)), [])
      for (const sector of history.sectors.keys()) {
        const epochs = yield* Effect.promise(() => Cluster.epochs(hosts, sector))
        assert.isTrue(epochs.every((e) => e === epochs[0]), `sector ${sector}: epochs ${epochs} from the three hosts`)
      }
      assert.isBelow(stall.ms, stallBoundMs, `the longest stall (sector ${stall.sector})`)
      assert.deepStrictEqual(Cluster.fencedLines(cluster), [], "no host had a sector claimed from under it")
    }).pipe(Effect.scoped), { timeout: pick(120_000, 600_000) })
})
