import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { HttpClient, HttpRouter } from "effect/http"
import * as Http from "../src/Http.ts"
import * as Lifecycle from "../src/Lifecycle.ts"

const TestServer = HttpRouter.serve(Http.routes, { disableListenLog: true, disableLogger: true }).pipe(
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provideMerge(Lifecycle.layer)
)

const status = (path: string) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.get(path)
    return { status: response.status, body: yield* response.json }
  })

describe("health and readiness", () => {
  it.live("answers /healthz at once and /readyz only between start-up and shutdown", () =>
    Effect.gen(function*() {
      const lifecycle = yield* Lifecycle.Lifecycle
      assert.deepStrictEqual(yield* status("/healthz"), { status: 200, body: { status: "ok" } })
      assert.deepStrictEqual(yield* status("/readyz"), { status: 503, body: { status: "starting" } })
      yield* lifecycle.markReady
      assert.deepStrictEqual(yield* status("/readyz"), { status: 200, body: { status: "ready" } })
      yield* lifecycle.requestShutdown
      assert.deepStrictEqual(yield* status("/readyz"), { status: 503, body: { status: "draining" } })
      assert.strictEqual((yield* status("/healthz")).status, 200)
    }).pipe(Effect.provide(TestServer)))
})
