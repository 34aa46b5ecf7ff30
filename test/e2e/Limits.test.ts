/**
 * The server's limits on the real process, on loopback: with 1,500 slow connections open (each has sent half its
 * headers and waits), `/healthz` still answers within a second; and connections past `MAX_CONNECTIONS` are closed as
 * they arrive while the ones within it are served.
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as net from "node:net"
import { scopedExactly } from "../support/HostProcess.ts"

/** Opens `count` connections to `port` that each send the start of a request and then nothing; closed with the scope. */
const slowConnections = (port: number, count: number) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      Promise.all(Array.from({ length: count }, () =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect(port, "127.0.0.1", () => {
            socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            resolve(socket)
          })
          socket.on("error", reject)
        })))
    ),
    (sockets) => Effect.sync(() => sockets.forEach((socket) => socket.destroy()))
  )

/** `GET /healthz` over a fresh connection: its status and how long it took, or the error code. */
const healthz = (port: number) =>
  Effect.promise(async () => {
    const started = performance.now()
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) })
      await response.text()
      return { status: response.status, millis: performance.now() - started }
    } catch (error) {
      return { status: 0, millis: performance.now() - started, error: String((error as Error).cause ?? error) }
    }
  })

describe("sector-host limits", () => {
  it.live("answers /healthz within a second with 1,500 slow connections open", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      yield* scopedExactly({ DATABASE_URL: Redacted.value(url), PORT: String(port) })
      const sockets = yield* slowConnections(port, 1500)
      assert.strictEqual(sockets.length, 1500)
      for (let i = 0; i < 3; i++) {
        const reply = yield* healthz(port)
        assert.strictEqual(reply.status, 200, JSON.stringify(reply))
        assert.isBelow(reply.millis, 1000)
      }
    }).pipe(Effect.scoped), { timeout: 90_000 })

  it.live("closes connections past MAX_CONNECTIONS, and serves again once they are gone", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      yield* scopedExactly({ DATABASE_URL: Redacted.value(url), PORT: String(port), MAX_CONNECTIONS: "20" })
      const held = yield* Effect.scoped(Effect.gen(function*() {
        yield* slowConnections(port, 20)
        yield* Effect.sleep("200 millis")
        return yield* healthz(port)
      }))
      assert.strictEqual(held.status, 0, JSON.stringify(held))
      yield* Effect.sleep("200 millis")
      assert.strictEqual((yield* healthz(port)).status, 200)
    }).pipe(Effect.scoped), { timeout: 90_000 })
})
