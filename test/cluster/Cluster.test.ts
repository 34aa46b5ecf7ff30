/**
 * Sectors sharded over three real sector-host processes (`RUNNER_PORT`) on one PostgreSQL (issue 14), in one run:
 *
 * 1. Load sent to every host in turn: each sector lives on exactly one host (the `sectors` of `GET /cluster` are
 *    disjoint, and every host answers the same epoch for it — 1: the sector was claimed once, never fenced), and the
 *    database holds exactly the fold of what was acknowledged.
 * 2. SIGKILL of one host: its sectors answer again from the survivors within 10 s (the figure is reported), with the
 *    state that was durable.
 * 3. SIGTERM of another host under load sent to the last one, which forwards: the stopping host hands its sectors off
 *    flushed, and not one accepted op is lost.
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import { call, type Host, scoped } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import * as Verify from "../support/Verify.ts"

/** `GET /cluster` of a runner. */
interface ClusterView {
  readonly mode: string
  readonly runner: string
  readonly runners: ReadonlyArray<{ readonly address: string; readonly healthy: boolean; readonly shards: number }>
  readonly sectors: ReadonlyArray<number>
}

const clusterOf = (host: Host) => Effect.promise(async () => (await call(host.baseUrl, "GET", "/cluster")).body as ClusterView)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves once every one of `hosts` sees `count` healthy runners. */
const awaitRunners = async (hosts: ReadonlyArray<Host>, count: number, timeoutMs = 20_000) => {
  const until = Date.now() + timeoutMs
  while (true) {
    const views = await Promise.all(hosts.map(async (h) => (await call(h.baseUrl, "GET", "/cluster")).body as ClusterView))
    if (views.every((v) => v.runners.filter((r) => r.healthy).length === count)) return views
    if (Date.now() > until) throw new Error(`not ${count} runners within ${timeoutMs} ms: ${JSON.stringify(views)}`)
    await sleep(100)
  }
}

/** A gauge of a host's `/metrics` (without attributes). */
const gauge = async (host: Host, name: string): Promise<number> => {
  const text = (await call(host.baseUrl, "GET", "/metrics")).body as string
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

/**
 * Resolves once the cluster is settled: every host sees all `hosts` runners and holds exactly the shards assigned to it
 * (`effect_cluster_shards` against its count in `GET /cluster`), releasing none. Until then shards still move, and a
 * sector written meanwhile may be handed off — claimed again, a legitimate epoch + 1.
 */
const awaitSettled = async (hosts: ReadonlyArray<Host>, timeoutMs = 30_000) => {
  await awaitRunners(hosts, hosts.length, timeoutMs)
  const until = Date.now() + timeoutMs
  while (true) {
    const views = await Promise.all(hosts.map(async (h) => (await call(h.baseUrl, "GET", "/cluster")).body as ClusterView))
    const assigned = views.map((v) => v.runners.find((r) => r.address === v.runner)?.shards)
    const held = await Promise.all(hosts.map((h) => gauge(h, "effect_cluster_shards")))
    const releasing = await Promise.all(hosts.map((h) => gauge(h, "effect_cluster_shards_releasing")))
    if (held.every((n, i) => n === assigned[i]) && releasing.every((x) => x === 0)) return held
    if (Date.now() > until) throw new Error(`shards not settled within ${timeoutMs} ms: held ${held}, releasing ${releasing}`)
    await sleep(100)
  }
}

describe("a cluster of three hosts", () => {
  it.live("shards sectors over the hosts, takes over a killed host's sectors within 10 s, hands off on SIGTERM", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const start = Effect.flatMap(Port.free, (runnerPort) =>
        scoped({ DATABASE_URL: url, RUNNER_PORT: String(runnerPort), SHUTDOWN_TIMEOUT: "20 seconds" }))
      const hosts = yield* Effect.all([start, start, start], { concurrency: "unbounded" })
      const [a, b, c] = hosts as [Host, Host, Host]
      const settledAt = Date.now()
      const held = yield* Effect.promise(() => awaitSettled(hosts))
      console.log(`[cluster] 3 runners settled (${held.join("/")} shards) ${Date.now() - settledAt} ms after the last one listened`)

      // ---- 1. round-robin load: one owner per sector, the fold in the database ----
      const history = new Load.History()
      const load = Load.start(hosts.map((h) => h.baseUrl), history, { sectors: 24, opsPerRequest: 6, pauseMs: 2, durableEvery: 4, seed: 14 })
      yield* Effect.sleep(3_000)
      yield* Effect.promise(load.stop)
      const sectors = [...history.sectors.keys()]
      assert.isAbove(history.acceptedOps(), 500, `too little load: ${JSON.stringify([...history.statuses])}`)

      const views = yield* Effect.forEach(hosts, clusterOf)
      const owners = new Map<number, Array<string>>()
      for (const view of views) for (const sector of view.sectors) owners.set(sector, [...(owners.get(sector) ?? []), view.runner])
      for (const sector of sectors) {
        assert.strictEqual(owners.get(sector)?.length, 1, `sector ${sector} resident on ${JSON.stringify(owners.get(sector))}`)
        const epochs = yield* Effect.forEach(hosts, (host) =>
          Effect.promise(async () => (await call(host.baseUrl, "GET", `/sectors/${sector}`)).body.epoch as number))
        assert.deepStrictEqual(epochs, [1, 1, 1], `sector ${sector}: epochs answered by the three hosts`)
      }
      const spread = views.map((v) => v.sectors.filter((s) => sectors.includes(s)).length)
      console.log(`[cluster] ${history.acceptedOps()} ops accepted over 3 hosts; sectors per host ${spread.join("/")}; ` +
        `shards per runner ${views[0]!.runners.map((r) => r.shards).join("/")}; statuses ${JSON.stringify([...history.statuses])}`)
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(a.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      const metrics = (yield* Effect.promise(() => call(a.baseUrl, "GET", "/metrics"))).body as string
      assert.match(metrics, /^sectors_cluster_forwarded_total\{.*rpc="Submit".*\} [1-9]/m, "forwarded requests are counted")
      assert.match(metrics, /^effect_cluster_shards 100$/m, "the cluster's own gauges are exported")

      // ---- 2. SIGKILL: the survivors take the dead host's sectors over within 10 s ----
      const victim = views[2]!.sectors.filter((s) => sectors.includes(s))
      assert.isAbove(victim.length, 0, "the host to kill owns some of the loaded sectors")
      c.signal("SIGKILL")
      const killedAt = Date.now()
      yield* Effect.promise(() => c.exited)
      // a request for one of its sectors waits (retried by the cluster) until a survivor owns the shard, then answers
      const answered = yield* Effect.forEach(victim, (sector, i) =>
        Effect.promise(async () => {
          const via = i % 2 === 0 ? a : b
          while (true) {
            const reply = await call(via.baseUrl, "GET", `/sectors/${sector}`)
            if (reply.status === 200) return Date.now() - killedAt
            assert.strictEqual(reply.status, 503, JSON.stringify(reply.body))
            assert.isNotNull(reply.headers.get("retry-after"))
            if (Date.now() - killedAt > 30_000) throw new Error(`sector ${sector} not back within 30 s: ${JSON.stringify(reply.body)}`)
          }
        }), { concurrency: "unbounded" })
      const takeover = Math.max(...answered)
      console.log(`[cluster] SIGKILL: ${victim.length} sectors of the killed host answered again after ${takeover} ms ` +
        `(first ${Math.min(...answered)} ms)`)
      assert.isBelow(takeover, 10_000, "takeover within 10 s")
      yield* Effect.promise(() => awaitRunners([a, b], 2))
      for (const sector of victim) {
        const epochs = yield* Effect.forEach([a, b], (host) =>
          Effect.promise(async () => (await call(host.baseUrl, "GET", `/sectors/${sector}`)).body.epoch as number))
        assert.strictEqual(epochs[0], epochs[1], `sector ${sector}: the same epoch from both survivors`)
      }

      // ---- 3. SIGTERM under load: the stopping host hands off, nothing accepted is lost ----
      const load2 = Load.start(a.baseUrl, history, { sectors: 24, opsPerRequest: 6, pauseMs: 2, durableEvery: 4, seed: 14 })
      yield* Effect.sleep(1_500)
      const before = history.acceptedOps()
      b.signal("SIGTERM")
      const exit = yield* Effect.promise(() => b.exited)
      yield* Effect.sleep(1_500)
      yield* Effect.promise(load2.stop)
      assert.strictEqual(exit.code, 0, b.output().slice(-3000))
      assert.isAbove(history.acceptedOps(), before, "the load went on while the host stopped")
      assert.strictEqual(history.unanswered, 0, "every request was answered")
      console.log(`[cluster] SIGTERM under load: slowest answer ${history.slowest} ms; statuses ${JSON.stringify([...history.statuses])}; ` +
        `${b.output().split("\n").find((l) => l.includes("left the cluster")) ?? ""}`)
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.flushAll(a.baseUrl, history)), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true })), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Verify.readBack(a.baseUrl, history)), [])
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
