/**
 * The running host, end to end: a real `sector-host` process on a real PostgreSQL, driven over HTTP.
 */
import { assert, describe, it } from "@effect/vitest"
import { type Op, SectorState } from "@sectors/core"
import { Arbitraries } from "@sectors/core/testing"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Fiber, Redacted } from "effect"
import * as fc from "fast-check"
import * as http from "node:http"
import postgres from "postgres"
import { call, type Host, scoped as start } from "../support/HostProcess.ts"
import { metric } from "../support/Observe.ts"

/** A fresh database; the env to start a host on it. */
const fixture = Effect.gen(function*() {
  const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
  return { url, env: { DATABASE_URL: url } }
})

const post = (host: Host, sector: number, ops: ReadonlyArray<Op.Op>, ack = "accepted") =>
  Effect.promise(() => call(host.baseUrl, "POST", `/sectors/${sector}/ops?ack=${ack}`, { ops }))

/** The entity as the host should show it after applying `ops` in order. */
const expected = (ops: ReadonlyArray<Op.Op>, entity: number) => SectorState.view(SectorState.fold(ops), entity)

const entitiesOf = (ops: ReadonlyArray<Op.Op>) => [...new Set(ops.map((op) => op.entity))]

const chunk = <A>(items: ReadonlyArray<A>, size: number) => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * Reads every entity a sector's ops touch back and compares it with the fold of the sector's first
 * `persisted[sector]` ops (an entity only later ops touch must not exist).
 */
const checkAgainstFold = (host: Host, streams: ReadonlyArray<ReadonlyArray<Op.Op>>, persisted: ReadonlyArray<number>) =>
  Effect.forEach(streams, (ops, sector) =>
    Effect.forEach(entitiesOf(ops), (entity) =>
      Effect.gen(function*() {
        const response = yield* Effect.promise(() => call(host.baseUrl, "GET", `/sectors/${sector}/entities/${entity}`))
        const want = expected(ops.slice(0, persisted[sector]), entity)
        if (want === undefined) {
          assert.strictEqual(response.status, 404, `sector ${sector} entity ${entity} should not exist`)
        } else {
          assert.strictEqual(response.status, 200, `sector ${sector} entity ${entity}`)
          assert.deepStrictEqual(
            { components: response.body.components, authority: response.body.authority },
            { components: want.components, authority: want.authority },
            `sector ${sector} entity ${entity}`
          )
        }
      }), { concurrency: 8, discard: true }), { discard: true })

/**
 * Holds the tables a batch writes locked (ACCESS EXCLUSIVE, in an open transaction), so no batch can commit until the
 * returned function ends the transaction and closes the connection: `entity_components` as well as `sectors`, since a
 * batch the claim fence vouches for does not touch its sector's row.
 */
const lockSectors = async (url: string): Promise<() => Promise<void>> => {
  const blocker = postgres(url, { max: 1, onnotice: () => {} })
  const reserved = await blocker.reserve()
  await reserved`BEGIN`
  await reserved`LOCK TABLE sectors, entity_components IN ACCESS EXCLUSIVE MODE`
  return async () => {
    await reserved`ROLLBACK`
    reserved.release()
    await blocker.end()
  }
}

describe("sector-host end to end", () => {
  it.live("SIGTERM flushes everything: after a restart every entity equals the fold of the accepted ops", () =>
    Effect.gen(function*() {
      const { env } = yield* fixture
      const sectors = 12
      const streams = fc.sample(Arbitraries.ops({ entities: 40, hot: 5 }, { min: 250, max: 250 }), { numRuns: sectors, seed: 42 })
      const first = yield* start(env)
      yield* Effect.forEach(streams, (ops, sector) =>
        Effect.forEach(chunk(ops, 25), (part) =>
          Effect.map(post(first, sector, part), (response) => assert.strictEqual(response.status, 202, JSON.stringify(response.body))), {
          discard: true
        }), { concurrency: "unbounded", discard: true })
      first.signal("SIGTERM")
      const exit = yield* Effect.promise(() => first.exited)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, first.output())
      const report = first.output().split("\n").find((line) => line.includes("shutdown:"))
      assert.isDefined(report, first.output())
      assert.include(report!, "0 unflushed")

      const second = yield* start(env)
      for (let sector = 0; sector < sectors; sector++) {
        const status = yield* Effect.promise(() => call(second.baseUrl, "GET", `/sectors/${sector}`))
        assert.strictEqual(status.body.persistedSeq, streams[sector]!.length)
      }
      yield* checkAgainstFold(second, streams, streams.map((ops) => ops.length))
    }), { timeout: 180_000 })

  it.live("every op acked durable before a SIGKILL is there after the restart, and nothing but a prefix", () =>
    Effect.gen(function*() {
      const { env } = yield* fixture
      const sectors = 6
      const streams = fc.sample(Arbitraries.ops({ entities: 30, hot: 4 }, { min: 400, max: 400 }), { numRuns: sectors, seed: 7 })
      const host = yield* start(env)
      // one request at a time per sector, so each request's seqs follow the previous one's
      const durableUpTo = new Array<number>(sectors).fill(0)
      let durableAcks = 0
      const load = yield* Effect.forkChild(Effect.forEach(streams, (ops, sector) =>
        Effect.gen(function*() {
          for (const part of chunk(ops, 10)) {
            const response = yield* Effect.promise(() =>
              call(host.baseUrl, "POST", `/sectors/${sector}/ops?ack=durable`, { ops: part }).catch(() => ({ status: 0, body: {} }))
            )
            // 0: the connection died with the host; any answer it gave must be a durable ack
            if (response.status === 0) return
            assert.strictEqual(response.status, 200, JSON.stringify(response.body))
            assert.isTrue(response.body.persisted)
            durableUpTo[sector] = response.body.lastSeq
            durableAcks++
          }
        }), { concurrency: "unbounded", discard: true }))
      // killed a quarter of the way through (60 of 240 requests acked), whatever the machine's speed: requests in
      // flight, batches committing, durable acks on their way
      while (durableAcks < 60) {
        // a failed answer ends the load: join it to report that failure
        if (load.pollUnsafe() !== undefined) yield* Fiber.join(load)
        assert.isUndefined(load.pollUnsafe(), "the load stopped before a quarter of it was acked durable")
        yield* Effect.sleep(2)
      }
      assert.isUndefined(load.pollUnsafe(), "the load was still running when the host was killed")
      host.signal("SIGKILL")
      yield* Effect.promise(() => host.exited)
      yield* Fiber.join(load)

      const again = yield* start(env)
      const persisted: Array<number> = []
      for (let sector = 0; sector < sectors; sector++) {
        const status = yield* Effect.promise(() => call(again.baseUrl, "GET", `/sectors/${sector}`))
        assert.isAtLeast(status.body.persistedSeq, durableUpTo[sector]!, `sector ${sector}`)
        persisted.push(status.body.persistedSeq)
      }
      // exact check: the durable state is the fold of exactly the first persistedSeq ops of each sector
      yield* checkAgainstFold(again, streams, persisted)
    }), { timeout: 180_000 })

  it.live("turns /readyz 503 and refuses new ops with 503 during shutdown, then exits 0", () =>
    Effect.gen(function*() {
      const { env, url } = yield* fixture
      const host = yield* start(env)
      yield* post(host, 1, [{ type: "set", entity: 1, component: "a", data: { v: 0 } }], "durable") // sector loaded
      // hold the tables so the op below stays pending and the final flush waits
      const unlock = yield* Effect.promise(() => lockSectors(url))
      assert.strictEqual((yield* post(host, 1, [{ type: "set", entity: 1, component: "a", data: { v: 1 } }])).status, 202)
      host.signal("SIGTERM")
      let ready = 200
      for (let i = 0; i < 50 && ready === 200; i++) {
        ready = (yield* Effect.promise(() => call(host.baseUrl, "GET", "/readyz"))).status
      }
      assert.strictEqual(ready, 503)
      const refused = yield* post(host, 2, [{ type: "set", entity: 1, component: "a", data: { v: 2 } }])
      assert.strictEqual(refused.status, 503)
      assert.isNotNull(refused.headers.get("retry-after"))
      assert.strictEqual((yield* Effect.promise(() => call(host.baseUrl, "GET", "/healthz"))).status, 200)
      yield* Effect.promise(unlock)
      assert.deepStrictEqual(yield* Effect.promise(() => host.exited), { code: 0, signal: null })
    }), { timeout: 120_000 })

  it.live("forces the exit with code 1 on a second signal a second later, saying what was not flushed", () =>
    Effect.gen(function*() {
      const { env, url } = yield* fixture
      const host = yield* start({ ...env, SHUTDOWN_TIMEOUT: "60 seconds" })
      yield* post(host, 1, [{ type: "set", entity: 1, component: "a", data: { v: 0 } }], "durable") // sector loaded
      const unlock = yield* Effect.promise(() => lockSectors(url))
      assert.strictEqual((yield* post(host, 1, [{ type: "set", entity: 1, component: "a", data: { v: 1 } }])).status, 202)
      host.signal("SIGTERM")
      host.signal("SIGTERM") // a duplicate from npm and the terminal: counted once
      yield* Effect.sleep(1_300)
      assert.isNull(host.child.exitCode)
      host.signal("SIGTERM")
      const exit = yield* Effect.promise(() => host.exited)
      yield* Effect.promise(unlock)
      assert.strictEqual(exit.code, 1)
      const line = host.output().split("\n").find((l) => l.includes("forced exit"))
      assert.isDefined(line, host.output())
      assert.include(line!, "1 accepted ops were not flushed (sectors 1)")
    }), { timeout: 120_000 })

  it.live("serves Prometheus metrics whose counters move as ops flow", () =>
    Effect.gen(function*() {
      const { env } = yield* fixture
      const host = yield* start(env)
      const before = yield* Effect.promise(() => call(host.baseUrl, "GET", "/metrics"))
      assert.strictEqual(before.status, 200)
      for (const line of String(before.body).split("\n")) {
        if (line === "" || line.startsWith("#")) continue
        assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/, line)
      }
      yield* post(host, 3, [{ type: "set", entity: 1, component: "a", data: {} }, { type: "set", entity: 2, component: "a", data: {} }], "durable")
      const after = yield* Effect.promise(() => call(host.baseUrl, "GET", "/metrics"))
      const delta = (name: string) => metric(String(after.body), name) - metric(String(before.body), name)
      assert.strictEqual(delta("sectors_ops_received_total"), 2)
      assert.isAtLeast(delta("sectors_ops_persisted_total"), 2)
    }), { timeout: 120_000 })

  it.live("drives itself with a workload and prints one summary line per second (--simulate)", () =>
    Effect.gen(function*() {
      const { env } = yield* fixture
      const host = yield* start(env, ["--simulate", "bursty"])
      for (let i = 0; i < 60 && (host.output().match(/op→durable/g) ?? []).length < 2; i++) yield* Effect.sleep(100)
      const lines = host.output().split("\n").filter((line) => line.includes("op→durable"))
      assert.isAtLeast(lines.length, 2, host.output())
      assert.match(lines[1]!, /in +\d+\/s .*persisted +\d+\/s .*batches +\d+\/s .*mean batch .*collapse .*commits .*p99 op→durable/)
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0)
    }), { timeout: 120_000 })

  it.live("takes flags over the environment (--port, --profile)", () =>
    Effect.gen(function*() {
      const { env } = yield* fixture
      const [envPort, port] = [yield* Port.free, yield* Port.free]
      const host = yield* start({ ...env, PORT: String(envPort) }, ["--port", String(port), "--profile", "aggressive"])
      assert.strictEqual(host.baseUrl, `http://127.0.0.1:${port}`)
      assert.include(host.output(), "profile: aggressive")
    }), { timeout: 120_000 })

  it.live("exports traces and metrics over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, and runs without a collector", () =>
    Effect.gen(function*() {
      const received = new Set<string>()
      const collector = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<http.Server>((resolve) => {
            const server = http.createServer((request, response) => {
              received.add(request.url ?? "")
              request.resume()
              request.on("end", () => response.writeHead(200).end())
            })
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
      )
      const collectorPort = (collector.address() as { port: number }).port
      const { env } = yield* fixture
      const host = yield* start({
        ...env,
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collectorPort}`,
        OTEL_BSP_SCHEDULE_DELAY: "200",
        OTEL_METRIC_EXPORT_INTERVAL: "500"
      })
      yield* post(host, 4, [{ type: "set", entity: 1, component: "a", data: {} }], "durable")
      for (let i = 0; i < 50 && !(received.has("/v1/traces") && received.has("/v1/metrics")); i++) yield* Effect.sleep(100)
      assert.isTrue(received.has("/v1/traces"), [...received].join(","))
      assert.isTrue(received.has("/v1/metrics"), [...received].join(","))

      const closedPort = yield* Port.free
      const fixture2 = yield* fixture
      const lonely = yield* start({ ...fixture2.env, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closedPort}`, OTEL_BSP_SCHEDULE_DELAY: "100" })
      const op = { type: "set", entity: 1, component: "a", data: {} } as const
      assert.strictEqual((yield* post(lonely, 1, [op], "durable")).status, 200)
      // five schedule delays: that request's spans were exported to nowhere, and the host carries on
      yield* Effect.sleep(500)
      assert.isNull(lonely.child.exitCode, lonely.output())
      assert.strictEqual((yield* post(lonely, 1, [op], "durable")).status, 200)
    }), { timeout: 120_000 })
})
