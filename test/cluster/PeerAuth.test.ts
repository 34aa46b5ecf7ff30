/**
 * The runner port with `AUTH_TOKEN` (issue 15: cluster peers authenticate to each other): runners holding the token
 * form a cluster and forward to each other; a stranger reaching the runner port without it — or with a wrong one —
 * gets 401 before any WebSocket upgrade, so it cannot send a runner a message. A client's `Idempotency-Key` holds
 * across runners: a retry through another runner than the first attempt gets the original answer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import { type Host, scoped } from "../support/HostProcess.ts"

const token = "peer-secret-7f3a"
const authorized = { authorization: `Bearer ${token}`, "content-type": "application/json" }

const api = (host: Host, method: string, path: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(`${host.baseUrl}${path}`, {
      method,
      headers: authorized,
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: response.status, body: (await response.json()) as any }
  })

/** The shards a runner holds (`effect_cluster_shards` of its `/metrics`). */
const shardsHeld = (host: Host) =>
  Effect.promise(async () => {
    const text = await (await fetch(`${host.baseUrl}/metrics`, { headers: authorized })).text()
    const line = text.split("\n").find((l) => l.startsWith("effect_cluster_shards "))
    return line === undefined ? 0 : Number(line.split(" ")[1])
  })

/** What a client without the token gets from the runner port: the status of a plain request, and of an upgrade. */
const knock = (port: number, headers: Record<string, string>) =>
  Effect.promise(async () => {
    const plain = await fetch(`http://127.0.0.1:${port}/`, { headers })
    const upgrade = await new Promise<string>((resolve) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers } as never)
      socket.onopen = () => {
        socket.close()
        resolve("open")
      }
      socket.onerror = () => resolve("refused")
    })
    return { plain: plain.status, upgrade }
  })

describe("the runner port with AUTH_TOKEN", () => {
  it.live("peers with the token form a cluster and forward; a stranger gets 401 and no WebSocket", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const ports = [yield* Port.free, yield* Port.free]
      const [a, b] = yield* Effect.all(
        ports.map((port) => scoped({ DATABASE_URL: url, RUNNER_PORT: String(port), AUTH_TOKEN: token })),
        { concurrency: "unbounded" }
      )
      // both runners see each other healthy (their pings carry the token) and b has taken its shards
      const until = Date.now() + 30_000
      while (true) {
        const views = yield* Effect.all([api(a!, "GET", "/cluster"), api(b!, "GET", "/cluster")])
        const healthy = views.every((v) => v.body.runners.filter((r: { healthy: boolean }) => r.healthy).length === 2)
        if (healthy && (yield* shardsHeld(b!)) > 0) break
        assert.isBelow(Date.now(), until, `the runners did not share the shards: ${JSON.stringify(views)}`)
        yield* Effect.sleep(100)
      }
      // every sector answers through a, wherever it lives: some of them are forwarded to b
      for (let sector = 1; sector <= 20; sector++) {
        const reply = yield* api(a!, "POST", `/sectors/${sector}/ops?ack=durable`, {
          ops: [{ type: "set", entity: 1, component: "c", data: { sector } }]
        })
        assert.strictEqual(reply.status, 200, JSON.stringify(reply.body))
      }
      const onB = (yield* api(b!, "GET", "/cluster")).body.sectors as ReadonlyArray<number>
      assert.isAbove(onB.length, 0, "no sector was forwarded to the other runner")

      // a client's retry with its Idempotency-Key, first through a (forwarded), then through b (the owner itself)
      const keyed = (host: Host) =>
        Effect.promise(async () => {
          const response = await fetch(`${host.baseUrl}/sectors/${onB[0]}/ops`, {
            method: "POST",
            headers: { ...authorized, "idempotency-key": "client-retry-1" },
            body: JSON.stringify({ ops: [{ type: "set", entity: 2, component: "c", data: {} }] })
          })
          return { status: response.status, replayed: response.headers.get("idempotent-replayed"), body: await response.json() }
        })
      const original = yield* keyed(a!)
      const retried = yield* keyed(b!)
      assert.deepStrictEqual([original.status, original.replayed], [202, null])
      assert.deepStrictEqual([retried.status, retried.replayed, retried.body], [202, "true", original.body])

      for (const port of ports) {
        for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: `Basic ${token}` }]) {
          assert.deepStrictEqual(yield* knock(port, headers), { plain: 401, upgrade: "refused" }, JSON.stringify(headers))
        }
      }
    }).pipe(Effect.scoped), 120_000)
})
