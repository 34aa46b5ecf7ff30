/**
 * The status page's routes as a client sees them: `Http.routes` on a real HTTP server over a host on the memory sink.
 * The page needs no token and allows nothing from elsewhere; its stream needs the token, sends a sample of the host's
 * own figures each second (on the TestClock), is bounded by `maxStatusSubscribers`, and ends when the host starts
 * shutting down. (The browser and the real process: `test/e2e/StatusPage.test.ts`; the sampling only while watched:
 * `StatusFeed.test.ts`.)
 */
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { BatchPolicy, SectorHost } from "@sectors/core"
import { TestHost } from "@sectors/core/testing"
import { Duration, Effect, Fiber, Layer, Redacted, Stream } from "effect"
import { HttpClient, HttpClientRequest, HttpRouter } from "effect/http"
import * as HostConfig from "../src/HostConfig.ts"
import * as Http from "../src/Http.ts"
import * as Lifecycle from "../src/Lifecycle.ts"
import * as Sectors from "../src/Sectors.ts"
import type * as Status from "../src/Status.ts"
import { advanceUntil, eventually } from "./waiting.ts"

const token = "page-token"

const serve = (host: Partial<HostConfig.HostConfig["Service"]> = {}) =>
  HttpRouter.serve(Http.routes, { disableListenLog: true, disableLogger: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Sectors.layerLocal),
    Layer.provideMerge(TestHost.layer({
      policy: BatchPolicy.BatchPolicy.make({
        minBatch: 1,
        maxBatch: 100,
        maxWait: Duration.millis(10),
        maxPendingKeys: 1000
      })
    })),
    Layer.provideMerge(Lifecycle.layer),
    Layer.provideMerge(HostConfig.layer({ authToken: [Redacted.make(token)], ...host }))
  )

const authorized = (request: HttpClientRequest.HttpClientRequest) =>
  HttpClientRequest.setHeader(request, "authorization", `Bearer ${token}`)

/** Opens the stream (with the token) in the background; `samples` fills as events arrive, `fiber` ends with it. */
const openStream = Effect.gen(function*() {
  const client = yield* HttpClient.HttpClient
  const response = yield* client.execute(authorized(HttpClientRequest.get("/status/stream")))
  const samples: Array<Status.Sample> = []
  let text = ""
  const fiber = yield* response.stream.pipe(
    Stream.decodeText,
    Stream.runForEach((chunk) =>
      Effect.sync(() => {
        text += chunk
        let end: number
        while ((end = text.indexOf("\n\n")) >= 0) {
          const data = /^data: (.*)$/m.exec(text.slice(0, end))
          if (data !== null) samples.push(JSON.parse(data[1]!))
          text = text.slice(end + 2)
        }
      })
    ),
    Effect.forkScoped
  )
  return { status: response.status, headers: response.headers, samples, fiber }
})

describe("GET /", () => {
  it.effect("serves the page without a token, allowing nothing from elsewhere", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.get("/"))
      const text = yield* response.text
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers["content-type"], "text/html; charset=utf-8")
      assert.include(text, `data-metric="ops-accepted-per-second"`)
      assert.include(text, `data-auth="required"`)
      const csp = response.headers["content-security-policy"] ?? ""
      for (const directive of ["default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"]) {
        assert.include(csp, directive)
      }
      // nothing the page loads names another origin
      assert.notMatch(text, /(src|href)="(https?:)?\/\//)
    }).pipe(Effect.provide(serve())))
})

describe("GET / without AUTH_TOKEN", () => {
  it.effect("tells the page to open its stream without asking for a token", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const text = yield* (yield* client.execute(HttpClientRequest.get("/"))).text
      assert.include(text, `data-auth="none"`)
      const stream = yield* client.execute(HttpClientRequest.get("/status/stream"))
      assert.strictEqual(stream.status, 200)
    }).pipe(Effect.scoped, Effect.provide(serve({ authToken: [] }))))
})

describe("GET /status/sectors/{sector}", () => {
  it.effect("says a standalone host holds every sector itself, and refuses a bad id", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const held = yield* client.execute(authorized(HttpClientRequest.get("/status/sectors/3")))
      assert.deepStrictEqual(yield* held.json, { sector: 3, mode: "standalone", here: true })
      const bad = yield* client.execute(authorized(HttpClientRequest.get("/status/sectors/x")))
      assert.strictEqual(bad.status, 400)
    }).pipe(Effect.provide(serve())))
})

describe("GET /status/stream", () => {
  it.effect("needs the token", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.get("/status/stream"))
      assert.strictEqual(response.status, 401)
    }).pipe(Effect.provide(serve())))

  it.effect("sends a sample of the host's figures each second", () =>
    Effect.gen(function*() {
      const lifecycle = yield* Lifecycle.Lifecycle
      const host = yield* SectorHost.SectorHost
      yield* lifecycle.markReady
      const stream = yield* openStream
      assert.strictEqual(stream.status, 200)
      assert.strictEqual(stream.headers["content-type"], "text/event-stream")
      // the first sample measures the second after the stream opened; two ops go in during the second one
      yield* advanceUntil(Effect.sync(() => stream.samples.length >= 1), "1 second")
      assert.strictEqual(stream.samples[0]!.opsAcceptedPerSecond, 0)
      yield* host.submit(3, [{ type: "set", entity: 1, component: "c", data: { x: 1 } }])
      yield* host.submit(3, [{ type: "set", entity: 2, component: "c", data: { x: 2 } }])
      yield* advanceUntil(Effect.sync(() => stream.samples.length >= 2), "1 second")
      const sample = stream.samples[1]!
      assert.strictEqual(sample.seconds, 1)
      assert.strictEqual(sample.opsAcceptedPerSecond, 2)
      assert.deepStrictEqual(sample.state.readiness, { ready: true, reason: null })
      assert.strictEqual(sample.state.database.reachable, true)
      assert.deepStrictEqual(sample.busiest.map((s) => s.sector), [3])
      assert.strictEqual(sample.busiest[0]!.epoch, 1)
      assert.isNull(sample.cluster)
    }).pipe(Effect.scoped, Effect.provide(serve())))

  it.effect("refuses a stream past maxStatusSubscribers with 503", () =>
    Effect.gen(function*() {
      const first = yield* openStream
      assert.strictEqual(first.status, 200)
      const client = yield* HttpClient.HttpClient
      const second = yield* client.execute(authorized(HttpClientRequest.get("/status/stream")))
      assert.strictEqual(second.status, 503)
      assert.strictEqual(second.headers["retry-after"], "5")
      assert.strictEqual((yield* second.json as Effect.Effect<any>).type, "urn:sectors:problem:too-many-subscribers")
    }).pipe(Effect.scoped, Effect.provide(serve({ maxStatusSubscribers: 1 }))))

  it.effect("ends when the host starts shutting down", () =>
    Effect.gen(function*() {
      const lifecycle = yield* Lifecycle.Lifecycle
      const stream = yield* openStream
      yield* lifecycle.requestShutdown
      yield* eventually(Effect.sync(() => stream.fiber.pollUnsafe() !== undefined))
      yield* Fiber.join(stream.fiber)
    }).pipe(Effect.scoped, Effect.provide(serve())))
})
