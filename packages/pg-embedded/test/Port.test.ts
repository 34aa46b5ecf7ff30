import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as net from "node:net"
import { Port } from "../src/index.ts"

/** Listens on `port` of 127.0.0.1 until the scope closes; fails if that is refused. */
const listenOn = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<net.Server, Error>((resume) => {
      const server = net.createServer()
      server.once("error", (error) => resume(Effect.fail(error)))
      server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  )

describe("Port", () => {
  it.effect("hands out a port on 127.0.0.1 that can then be listened on", () =>
    Effect.gen(function*() {
      const port = yield* Port.free
      assert.isAbove(port, 0)
      assert.isBelow(port, 65_536)
      const server = yield* listenOn(port)
      assert.strictEqual((server.address() as net.AddressInfo).port, port)
    }).pipe(Effect.scoped))

  it.effect("hands out ports below the range of outgoing connections' source ports, never one twice", () =>
    Effect.gen(function*() {
      const ports = yield* Effect.forEach(Array.from({ length: 50 }), () => Port.free)
      const low = Port.ephemeralLow()
      assert.isTrue(ports.every((port) => port >= 1_024 && port < low), `${ports.join(", ")} (outgoing from ${low})`)
      assert.strictEqual(new Set(ports).size, ports.length)
    }))

  it.effect("hands out a port other than one being listened on", () =>
    Effect.gen(function*() {
      const taken = yield* Effect.flatMap(Port.free, listenOn)
      const takenPort = (taken.address() as net.AddressInfo).port
      for (let i = 0; i < 20; i++) assert.notStrictEqual(yield* Effect.promise(Port.freeAsync), takenPort)
    }).pipe(Effect.scoped))
})
