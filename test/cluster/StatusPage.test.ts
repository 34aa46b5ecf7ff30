/**
 * The status page on a cluster: `GET /status/sectors/{sector}` names the runner that holds a sector — the one that has
 * it resident (`GET /cluster`'s `sectors`) — through whichever host is asked, and the stream's samples carry the
 * cluster (runners, shards, the sectors held here).
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import { type Host, scoped } from "../support/HostProcess.ts"

const api = (host: Host, method: string, path: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(`${host.baseUrl}${path}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } })
    })
    return { status: response.status, body: (await response.json()) as any }
  })

/** The shards a runner holds (`effect_cluster_shards` of its `/metrics`). */
const shardsHeld = (host: Host) =>
  Effect.promise(async () => {
    const text = await (await fetch(`${host.baseUrl}/metrics`)).text()
    const line = text.split("\n").find((l) => l.startsWith("effect_cluster_shards "))
    return line === undefined ? 0 : Number(line.split(" ")[1])
  })

/** The first sample of a host's stream. */
const firstSample = (host: Host) =>
  Effect.promise(async () => {
    const abort = new AbortController()
    const response = await fetch(`${host.baseUrl}/status/stream`, { signal: abort.signal })
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
    let text = ""
    for (;;) {
      const { done, value } = await reader.read()
      if (done) throw new Error(`the stream ended: ${text}`)
      text += value
      const data = /^data: (.*)$/m.exec(text)
      if (data !== null) {
        abort.abort()
        return JSON.parse(data[1]!)
      }
    }
  })

describe("the status page on a cluster", () => {
  it.live("names the runner holding each sector, asked through any host", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const ports = [yield* Port.free, yield* Port.free]
      const hosts = yield* Effect.all(
        ports.map((port) => scoped({ DATABASE_URL: url, RUNNER_PORT: String(port) })),
        { concurrency: "unbounded" }
      )
      const [a, b] = hosts as [Host, Host]
      // until the runners hold the shards the cluster assigns them (each its share, all of them between the two)
      const until = Date.now() + 30_000
      while (true) {
        const held = yield* Effect.all([shardsHeld(a), shardsHeld(b)])
        if (held[0]! > 0 && held[1]! > 0 && held[0]! + held[1]! === 300) break
        assert.isBelow(Date.now(), until, `the runners did not share the shards: ${held}`)
        yield* Effect.sleep(100)
      }
      for (let sector = 1; sector <= 16; sector++) {
        const reply = yield* api(a, "POST", `/sectors/${sector}/ops`, {
          ops: [{ type: "set", entity: 1, component: "c", data: { sector } }]
        })
        assert.strictEqual(reply.status, 202, JSON.stringify(reply.body))
      }
      const resident = new Map<number, string>()
      for (const host of hosts) {
        const view = (yield* api(host, "GET", "/cluster")).body
        for (const sector of view.sectors as ReadonlyArray<number>) resident.set(sector, view.runner)
      }
      assert.strictEqual(resident.size, 16)
      for (const [sector, runner] of resident) {
        for (const host of hosts) {
          const here = (yield* api(host, "GET", "/cluster")).body.runner
          const held = (yield* api(host, "GET", `/status/sectors/${sector}`)).body
          assert.deepStrictEqual(held, { sector, mode: "cluster", heldBy: runner, here: runner === here })
        }
      }

      const sample = yield* firstSample(a)
      const view = (yield* api(a, "GET", "/cluster")).body
      assert.strictEqual(sample.cluster.runner, view.runner)
      assert.deepStrictEqual(sample.cluster.runners.map((r: { address: string }) => r.address), view.runners.map((r: { address: string }) => r.address))
      assert.deepStrictEqual(sample.cluster.resident, view.sectors)
    }).pipe(Effect.scoped), 120_000)
})
