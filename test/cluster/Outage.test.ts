/**
 * PostgreSQL stopped under load while three hosts run as a cluster on it (issue 14, "Database outage in cluster
 * mode"), for longer than the shard lock expiration (5 s): the database holds the sectors *and* the cluster's runner
 * storage and shard locks, so the outage hits both. The runners' lock refresh fails and they let their shards go; each
 * sector's release keeps retrying its final flush rather than give up; once the database is back the shards settle
 * again. Afterwards not one accepted op is lost (the database is the fold of everything acknowledged), and every
 * request during the outage got an answer — 202/200, or 429/503 with `Retry-After`, or 504 for a durable wait that
 * timed out — within its bound, never a hang.
 *
 * Reported: what the shards did (each host's `effect_cluster_shards` over time), how many sectors were handed off and
 * claimed again, and how long after the return the cluster settled.
 *
 * CI stops the database for 8 s; the soak run for 30 s.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Cluster from "../support/Cluster.ts"
import * as ControlledPg from "../support/ControlledPg.ts"
import * as Load from "../support/Load.ts"
import { metric, scrape } from "../support/Observe.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

const outageMs = pick(8_000, 30_000)
const durableTimeoutMs = 3_000
const forwardTimeoutMs = 5_000
/** The longest any answer may take: a durable wait on the owner, plus reaching it, plus slack for a loaded machine. */
const answerBoundMs = durableTimeoutMs + forwardTimeoutMs + 2_000

/** Each running host's shards held now (`-` for a host that does not answer). */
const shardsNow = (cluster: Cluster.Cluster) =>
  Promise.all(cluster.members.map(async (m) => {
    try {
      return String(metric(await scrape(m.host.baseUrl), "effect_cluster_shards"))
    } catch {
      return "-"
    }
  }))

describe("a cluster of three hosts when PostgreSQL goes away", () => {
  it.live(`loses no accepted op over a ${outageMs / 1000} s outage, answers every request meanwhile, and settles after`, () =>
    Effect.gen(function*() {
      const pg = yield* Effect.acquireRelease(Effect.promise(ControlledPg.start), (pg) => Effect.promise(pg.dispose))
      const url = pg.url()
      const cluster = yield* Cluster.make({
        url,
        hosts: 3,
        env: { DURABLE_TIMEOUT: `${durableTimeoutMs} millis`, FORWARD_TIMEOUT: `${forwardTimeoutMs} millis` }
      })
      yield* Effect.promise(() => cluster.settle())
      const history = new Load.History()
      const load = Load.start(cluster.urls, history, { sectors: 24, opsPerRequest: 6, pauseMs: 20, durableEvery: 5, seed: 18, idempotencyKeys: true })
      yield* Effect.sleep(2_000)
      const residentBefore = yield* Effect.forEach(cluster.running(), (h) => Effect.promise(() => Cluster.view(h)))

      const timeline: Array<string> = []
      const acceptedBefore = history.acceptedOps()
      const downAt = Date.now()
      yield* Effect.promise(pg.stop)
      while (Date.now() - downAt < outageMs) {
        yield* Effect.sleep(1_000)
        timeline.push(`${((Date.now() - downAt) / 1000).toFixed(0)} s ${(yield* Effect.promise(() => shardsNow(cluster))).join("/")}`)
      }
      const acceptedDuring = history.acceptedOps() - acceptedBefore
      yield* Effect.promise(pg.start)
      const upAt = Date.now()
      const held = yield* Effect.promise(() => cluster.settle(60_000))
      const settledMs = Date.now() - upAt
      yield* Effect.sleep(2_000)
      yield* Effect.promise(load.stop)

      const hosts = cluster.running()
      const handoffs = yield* Effect.forEach(hosts, (h) => Effect.promise(() => Cluster.metricOf(h, "sectors_cluster_handoffs_total")))
      const fenced = yield* Effect.forEach(hosts, (h) =>
        Effect.promise(() => Cluster.metricOf(h, "sectors_persist_failures_total", { reason: "Fenced" })))
      const residentAfter = yield* Effect.forEach(hosts, (h) => Effect.promise(() => Cluster.view(h)))
      const ownerOf = (views: ReadonlyArray<Cluster.ClusterView>, sector: number) => views.find((v) => v.sectors.includes(sector))?.runner
      const loaded = [...history.sectors.keys()]
      const sameOwner = loaded.filter((s) => ownerOf(residentBefore, s) === ownerOf(residentAfter, s)).length
      const epochs = yield* Effect.forEach(loaded, (s) => Effect.promise(() => Cluster.epochs(hosts, s)))
      const reclaimed = epochs.filter((e) => e[0]! > 1).length
      const statuses = Object.fromEntries(history.statuses)
      const handoffSeconds = yield* Effect.forEach(hosts, (h) =>
        Effect.promise(async () => {
          const text = await scrape(h.baseUrl)
          return metric(text, "sectors_cluster_handoff_seconds_sum") / metric(text, "sectors_cluster_handoff_seconds_count")
        }))
      console.log(`[cluster] ${outageMs / 1000} s database outage: shards held per host over the outage ${timeline.join(", ")}; ` +
        `settled ${settledMs} ms after the return (${held.join("/")}); ${acceptedDuring} ops accepted during it; ` +
        `handoffs per host ${handoffs.join("/")} taking ${handoffSeconds.map((x) => x.toFixed(1)).join("/")} s on average; ${reclaimed} of ${loaded.length} sectors claimed again (epoch > 1), ` +
        `${sameOwner} on the host that had them; fenced persists ${fenced.join("/")}; statuses ${JSON.stringify(statuses)}; ` +
        `refusals ${JSON.stringify(Object.fromEntries(history.refusals))}; ${history.replayed} resends answered as replays; ` +
        `slowest answer ${history.slowest} ms`)

      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(hosts[0]!.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      assert.strictEqual(history.unanswered, 0, "every request was answered")
      assert.strictEqual(history.missingRetryAfter, 0, `every refusal carries Retry-After: ${history.missingRetryAfterSample.join(" | ")}`)
      assert.isBelow(history.slowest, answerBoundMs, "no request waited past its bound")
      const others = Object.keys(statuses).map(Number).filter((s) => ![200, 202, 429, 503, 504].includes(s))
      assert.deepStrictEqual(others, [], "answers are 202/200, refusals with Retry-After, or 504 for a durable wait")
      for (const [i, sector] of loaded.entries()) {
        assert.isTrue(epochs[i]!.every((e) => e === epochs[i]![0]), `sector ${sector}: epochs ${epochs[i]} from the three hosts`)
      }
      assert.deepStrictEqual(Cluster.fencedLines(cluster), [], "no host had a sector claimed from under it")
    }).pipe(Effect.scoped), { timeout: outageMs + 120_000 })
})
