/**
 * The HTTP API as a client sees it: `Http.routes` served on a real HTTP server (`NodeHttpServer.layerTest`) over a
 * host on the core test kit's memory sink with fault injection. Requests are real I/O; everything that depends on
 * time (durable timeout, slow or failing sink, circuit breaker) runs on the TestClock.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { BatchPolicy, SectorHost, type SectorsConfig } from "@sectors/core"
import { FaultSink, MemorySink, TestHost } from "@sectors/core/testing"
import { Duration, Effect, Fiber, Layer, Logger, Redacted, Stream, Tracer } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest, HttpRouter, HttpServer } from "effect/http"
import { request as httpRequest, type Server } from "node:http"
import { connect } from "node:net"
import * as HostConfig from "../src/HostConfig.ts"
import * as Http from "../src/Http.ts"
import * as Lifecycle from "../src/Lifecycle.ts"
import * as Sectors from "../src/Sectors.ts"
import { advanceUntil, eventually } from "./waiting.ts"

// ---- set-up: the routes on a real HTTP server, over a host on the memory sink with fault injection ----

const limits = { maxBodyBytes: 4096, maxOpsPerRequest: 10, maxDataBytes: 256 }

const policy = (options: Partial<{ minBatch: number; maxWait: Duration.Input; maxPendingKeys: number }> = {}) =>
  BatchPolicy.BatchPolicy.make({
    minBatch: options.minBatch ?? 1,
    maxBatch: 100,
    maxWait: Duration.fromInputUnsafe(options.maxWait ?? "10 millis"),
    maxPendingKeys: options.maxPendingKeys ?? 1000
  })

/** `NodeHttpServer.layerTest` on the host's own server (`Http.makeServer` with the default limits). */
const hostServer = HttpServer.layerTestClient.pipe(
  Layer.provide(
    Layer.fresh(FetchHttpClient.layer).pipe(Layer.provide(Layer.succeed(FetchHttpClient.RequestInit)({ keepalive: false })))
  ),
  Layer.provideMerge(NodeHttpServer.layer(() => Http.makeServer(HostConfig.defaults), { port: 0 }))
)

/** The API on `NodeHttpServer.layerTest`; every batch is persisted as soon as it is pending unless `sectors` says. */
const serve = (
  options: {
    readonly host?: Partial<HostConfig.HostConfig["Service"]>
    readonly sectors?: Partial<SectorsConfig.SectorsConfig["Service"]>
    /** The host's own Node server (`Http.makeServer`, as `Host` serves) rather than a plain one. */
    readonly hostServer?: boolean
  } = {}
) =>
  HttpRouter.serve(Http.routes, { disableListenLog: true, disableLogger: true }).pipe(
    Layer.provideMerge(options.hostServer === true ? hostServer : NodeHttpServer.layerTest),
    Layer.provideMerge(Sectors.layerLocal),
    Layer.provideMerge(TestHost.layer({
      policy: policy(),
      retryMaxDelay: Duration.millis(10),
      retryDeadline: Duration.millis(50),
      circuitFailures: 1,
      circuitOpenBase: Duration.seconds(60),
      circuitOpenMax: Duration.seconds(60),
      ...options.sectors
    })),
    Layer.provideMerge(Lifecycle.layer),
    Layer.provideMerge(HostConfig.layer({ ...limits, durableTimeout: Duration.seconds(5), ...options.host }))
  )

// ---- requests ----

interface Reply {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly text: string
  readonly body: any
}

const send = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(request)
    const text = yield* response.text
    const json = /json/.test(response.headers["content-type"] ?? "") && text !== ""
    return { status: response.status, headers: response.headers, text, body: json ? JSON.parse(text) : undefined } as Reply
  })

const get = (path: string) => send(HttpClientRequest.get(path))

const post = (path: string, body?: unknown) =>
  send(
    body === undefined
      ? HttpClientRequest.post(path)
      : typeof body === "string"
      ? HttpClientRequest.post(path).pipe(HttpClientRequest.bodyText(body, "application/json"))
      : HttpClientRequest.post(path).pipe(HttpClientRequest.bodyJsonUnsafe(body))
  )

const set = (entity: number, component = "c", data: Record<string, unknown> = { x: entity }) => ({
  type: "set",
  entity,
  component,
  data
})

/** Asserts an `application/problem+json` answer with `status` whose `errors` name (at least) `fields`. */
const assertProblem = (
  reply: Reply,
  status: number,
  fields: ReadonlyArray<{ readonly index?: number; readonly field: string }> = []
) => {
  assert.strictEqual(reply.status, status, reply.text)
  assert.strictEqual(reply.headers["content-type"], "application/problem+json")
  assert.isString(reply.body.type)
  assert.isString(reply.body.title)
  assert.strictEqual(reply.body.status, status)
  assert.isString(reply.body.detail)
  for (const expected of fields) {
    const found = (reply.body.errors ?? []).some((error: { index?: number; field: string }) =>
      error.field === expected.field && error.index === expected.index
    )
    assert.isTrue(found, `errors name ${JSON.stringify(expected)}: ${JSON.stringify(reply.body.errors)}`)
  }
}

// ---- waiting (see ./waiting.ts) ----

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.sync(() => fiber.pollUnsafe() !== undefined)

const stats = (sector: number) => Effect.flatMap(SectorHost.SectorHost, (host) => host.stats(sector))

/** Only sector 7 is active, with exactly `lastSeq` ops, and the sink has loaded no other sector. */
const assertUnchanged = (lastSeq: number) =>
  Effect.gen(function*() {
    const list = yield* get("/sectors")
    assert.deepStrictEqual(list.body.sectors.map((s: { sector: number; lastSeq: number }) => [s.sector, s.lastSeq]), [[
      7,
      lastSeq
    ]])
    assert.deepStrictEqual((yield* MemorySink.MemorySink).sectorIds(), [7])
  })

// ---- the API ----

describe("POST /sectors/{sector}/ops", () => {
  it.effect("accepts ops with 202 and their seqs, before they are durable", () =>
    Effect.gen(function*() {
      const first = yield* post("/sectors/3/ops", { ops: [set(1), set(2)] })
      assert.strictEqual(first.status, 202)
      assert.deepStrictEqual(first.body, { sector: 3, accepted: 2, firstSeq: 1, lastSeq: 2 })
      const second = yield* post("/sectors/3/ops?ack=accepted", { ops: [{ type: "delete", entity: 1 }] })
      assert.deepStrictEqual([second.status, second.body], [202, { sector: 3, accepted: 1, firstSeq: 3, lastSeq: 3 }])
    }).pipe(Effect.provide(serve({ sectors: { policy: policy({ minBatch: 100, maxWait: "1 hour" }) } }))))

  it.effect("answers ack=durable with 200 only once the ops are committed", () =>
    Effect.gen(function*() {
      const store = yield* MemorySink.MemorySink
      const reply = yield* post("/sectors/3/ops?ack=durable", {
        ops: [set(1, "position", { x: 1 }), { type: "authority", entity: 1, component: "position", worker: "w-7" }]
      })
      assert.strictEqual(reply.status, 200)
      assert.deepStrictEqual(reply.body, { sector: 3, accepted: 2, firstSeq: 1, lastSeq: 2, persisted: true })
      assert.strictEqual(store.sector(3)?.persistedSeq, 2)
      assert.deepStrictEqual(store.rows(3).components.map((row) => [row.entity, row.component, row.data]), [
        [1, "position", { x: 1 }]
      ])
    }).pipe(Effect.provide(serve())))

  it.effect("answers 504 when the ops are not durable within durableTimeout, and keeps them accepted", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      yield* post("/sectors/1/ops?ack=durable", { ops: [set(1)] })
      yield* faults.slow("1 hour")
      const request = yield* Effect.forkChild(post("/sectors/1/ops?ack=durable", { ops: [set(2), set(3)] }))
      yield* eventually(Effect.map(stats(1), (s) => s.lastSeq === 3))
      yield* advanceUntil(isDone(request), "1 second")
      const reply = yield* Fiber.join(request)
      assertProblem(reply, 504)
      assert.deepStrictEqual(
        [reply.body.sector, reply.body.accepted, reply.body.firstSeq, reply.body.lastSeq, reply.body.persistedSeq],
        [1, 2, 2, 3, 1]
      )
      // the sink recovers: the accepted ops are persisted after all
      yield* faults.reset
      yield* advanceUntil(Effect.map(stats(1), (s) => s.persistedSeq === 3), "1 minute")
      assert.strictEqual((yield* get("/sectors/1")).body.persistedSeq, 3)
    }).pipe(Effect.provide(serve())))

  it.effect("answers 429 backlog-full with Retry-After, within MAILBOX_WAIT, when the sector holds maxPendingKeys", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      yield* post("/sectors/1/ops?ack=durable", { ops: [set(1)] })
      yield* faults.slow("10 seconds")
      // one batch in flight, then one key pending: maxPendingKeys
      assert.strictEqual((yield* post("/sectors/1/ops", { ops: [set(2)] })).status, 202)
      yield* eventually(Effect.map(stats(1), (s) => s.inFlightOps === 1))
      assert.strictEqual((yield* post("/sectors/1/ops", { ops: [set(3)] })).status, 202)

      const waiting = yield* Effect.forkChild(post("/sectors/1/ops", { ops: [set(4)] }))
      yield* advanceUntil(isDone(waiting), "10 millis")
      const refused = yield* Fiber.join(waiting)
      assertProblem(refused, 429)
      assert.strictEqual(refused.body.type, "urn:sectors:problem:backlog-full")
      assert.strictEqual(refused.headers["retry-after"], "3") // mailboxRetryAfter 2.5 s, rounded up
      assert.strictEqual((yield* stats(1)).lastSeq, 3)

      yield* faults.reset
      yield* advanceUntil(Effect.map(stats(1), (s) => s.persistedSeq === 3), "1 second")
      assert.deepStrictEqual((yield* post("/sectors/1/ops", { ops: [set(4)] })).body, { sector: 1, accepted: 1, firstSeq: 4, lastSeq: 4 })
    }).pipe(Effect.provide(serve({
      sectors: { mailboxRetryAfter: Duration.millis(2500), mailboxWait: Duration.millis(100), policy: policy({ maxPendingKeys: 1 }) }
    }))))

  it.effect("keeps accepting while the circuit is open; /readyz stays 200 and says the database is down; durable waits are bounded", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      const host = yield* SectorHost.SectorHost
      const lifecycle = yield* Lifecycle.Lifecycle
      yield* lifecycle.markReady
      yield* post("/sectors/1/ops?ack=durable", { ops: [set(1)] })
      assert.strictEqual((yield* get("/readyz")).status, 200)

      yield* faults.outage("1 hour")
      assert.strictEqual((yield* post("/sectors/1/ops", { ops: [set(2)] })).status, 202)
      yield* advanceUntil(Effect.sync(() => host.circuit()._tag === "Open"), "10 millis")

      assert.strictEqual((yield* post("/sectors/1/ops", { ops: [set(3)] })).status, 202)
      const ready = yield* get("/readyz")
      assert.strictEqual(ready.status, 200)
      assert.strictEqual(ready.body.database.reachable, false)
      assert.isString(ready.body.database.downSince)
      assert.strictEqual(ready.body.circuit.state, "Open")
      assert.isAbove(ready.body.buffer.bytes, 0)
      const flush = yield* Effect.forkChild(post("/sectors/1/flush"))
      yield* advanceUntil(isDone(flush), "100 millis")
      assertProblem(yield* Fiber.join(flush), 504)
      assert.strictEqual((yield* stats(1)).lastSeq, 3)

      // the database is back: what was buffered is persisted and the circuit closes
      yield* faults.reset
      yield* advanceUntil(Effect.map(stats(1), (s) => s.persistedSeq === 3), "1 second")
      const after = yield* get("/readyz")
      assert.deepStrictEqual([after.status, after.body.database.reachable, after.body.buffer.bytes], [200, true, 0])
    }).pipe(Effect.provide(serve())))

  it.effect("answers 429 buffer-full at once when the host's budget is spent, and /readyz turns 503 buffer-full", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      const lifecycle = yield* Lifecycle.Lifecycle
      yield* lifecycle.markReady
      yield* post("/sectors/1/ops?ack=durable", { ops: [set(1)] })
      yield* faults.outage("1 hour")
      let refused: Reply | undefined
      for (let i = 2; i < 200 && refused === undefined; i++) {
        const answer = yield* post("/sectors/1/ops", { ops: [set(i)] })
        if (answer.status !== 202) refused = answer
      }
      assert.isDefined(refused)
      assertProblem(refused!, 429)
      assert.strictEqual(refused!.body.type, "urn:sectors:problem:buffer-full")
      assert.strictEqual(refused!.body.budgetBytes, 4096)
      assert.isDefined(refused!.headers["retry-after"])
      const ready = yield* get("/readyz")
      assertProblem(ready, 503)
      assert.strictEqual(ready.body.reason, "buffer-full")
      assert.strictEqual(ready.body.buffer.budget, 4096)
      yield* faults.reset
      yield* advanceUntil(Effect.map(get("/readyz"), (r) => r.status === 200), "1 second")
    }).pipe(Effect.provide(serve({ sectors: { maxBufferedBytes: 4096 } }))))

  it.effect("answers 503 with Retry-After once the host is shutting down", () =>
    Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      yield* post("/sectors/1/ops", { ops: [set(1)] })
      yield* host.shutdown
      const refused = yield* post("/sectors/1/ops", { ops: [set(2)] })
      assertProblem(refused, 503)
      assert.strictEqual(refused.headers["retry-after"], "1")
    }).pipe(Effect.provide(serve())))
})

describe("tracing", () => {
  /** A tracer that keeps every span it starts (the native one's), as an exporter would see them. */
  const recording = () => {
    const spans: Array<Tracer.Span> = []
    const tracer = Tracer.make({
      span(options) {
        const span = Tracer.nativeTracer.span(options)
        spans.push(span)
        return span
      }
    })
    return { spans, layer: Layer.succeed(Tracer.Tracer)(tracer) }
  }

  it.effect("gives a submission on the host's server its http.server span from the router, with route and status, when a tracer exports", () => {
    const { layer, spans } = recording()
    return Effect.gen(function*() {
      assert.strictEqual((yield* post("/sectors/3/ops", { ops: [set(1)] })).status, 202)
      const servers = spans.filter((span) => span.kind === "server")
      assert.strictEqual(servers.length, 1, servers.map((span) => span.name).join(", "))
      const [span] = servers
      assert.strictEqual(span!.name, "POST")
      assert.strictEqual(span!.attributes.get("http.route"), "/sectors/:sector/ops")
      assert.strictEqual(span!.attributes.get("http.response.status_code"), 202)
    }).pipe(Effect.provide(serve({ hostServer: true }).pipe(Layer.provide(layer))))
  })

  it.effect("gives every traced submission its SectorHost.submit span, one to an awake sector too", () => {
    const { layer, spans } = recording()
    return Effect.gen(function*() {
      for (let i = 1; i <= 3; i++) assert.strictEqual((yield* post("/sectors/3/ops", { ops: [set(i)] })).status, 202)
      const submits = spans.filter((span) => span.name === "SectorHost.submit")
      assert.strictEqual(submits.length, 3)
      assert.deepStrictEqual(submits.map((span) => span.attributes.get("outcome")), ["success", "success", "success"])
    }).pipe(Effect.provide(serve({ hostServer: true }).pipe(Layer.provide(layer))))
  })
})

describe("Idempotency-Key", () => {
  const keyed = (path: string, key: string, body: unknown) =>
    send(
      HttpClientRequest.post(path).pipe(
        HttpClientRequest.setHeader("idempotency-key", key),
        HttpClientRequest.bodyText(typeof body === "string" ? body : JSON.stringify(body), "application/json")
      )
    )

  it.effect("a retry with the same key and body gets the original answer and applies nothing", () =>
    Effect.gen(function*() {
      const body = { ops: [set(1), set(2)] }
      const first = yield* keyed("/sectors/3/ops", "k-1", body)
      const again = yield* keyed("/sectors/3/ops", "k-1", body)
      assert.deepStrictEqual([first.status, first.body], [202, { sector: 3, accepted: 2, firstSeq: 1, lastSeq: 2 }])
      assert.isUndefined(first.headers["idempotent-replayed"])
      assert.deepStrictEqual([again.status, again.body], [202, first.body])
      assert.strictEqual(again.headers["idempotent-replayed"], "true")
      // durable: the same seqs, once durable
      const durable = yield* keyed("/sectors/3/ops?ack=durable", "k-1", body)
      assert.deepStrictEqual([durable.status, durable.body], [200, { ...first.body, persisted: true }])
      assert.strictEqual((yield* get("/sectors/3")).body.lastSeq, 2)
    }).pipe(Effect.provide(serve())))

  it.effect("the same key with a different body is 422 and applies nothing", () =>
    Effect.gen(function*() {
      yield* keyed("/sectors/3/ops", "k-1", { ops: [set(1)] })
      const reused = yield* keyed("/sectors/3/ops", "k-1", { ops: [set(1, "other")] })
      assertProblem(reused, 422)
      assert.strictEqual(reused.body.type, "urn:sectors:problem:idempotency-key-reused")
      assert.strictEqual((yield* get("/sectors/3")).body.lastSeq, 1)
    }).pipe(Effect.provide(serve())))

  it.effect("a malformed key is a 400 naming the header, and nothing is applied", () =>
    Effect.gen(function*() {
      for (const key of ["k".repeat(256), "with space", ""]) {
        const reply = yield* keyed("/sectors/3/ops", key, { ops: [set(1)] })
        assertProblem(reply, 400, [{ field: "Idempotency-Key" }])
      }
      assert.strictEqual((yield* get("/sectors/3")).body.phase, "passive")
    }).pipe(Effect.provide(serve())))
})

describe("durable waiters (MAX_DURABLE_WAITERS)", () => {
  it.effect("refuses one more ack=durable submission or flush at once with 503 too-many-waiters, applying nothing", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      yield* post("/sectors/7/ops?ack=durable", { ops: [set(1)] })
      yield* faults.slow("10 seconds")
      const first = yield* Effect.forkChild(post("/sectors/7/ops?ack=durable", { ops: [set(2)] }))
      const second = yield* Effect.forkChild(post("/sectors/7/ops?ack=durable", { ops: [set(3)] }))
      yield* eventually(Effect.map(stats(7), (s) => s.lastSeq === 3))

      // the TestClock stands still: these answers come at once, not after any wait
      const third = yield* post("/sectors/7/ops?ack=durable", { ops: [set(4)] })
      assertProblem(third, 503)
      assert.strictEqual(third.body.type, "urn:sectors:problem:too-many-waiters")
      assert.strictEqual(third.body.maxDurableWaiters, 2)
      assert.strictEqual(third.headers["retry-after"], "1")
      const flush = yield* post("/sectors/7/flush")
      assertProblem(flush, 503)
      assert.strictEqual(flush.body.type, "urn:sectors:problem:too-many-waiters")
      yield* assertUnchanged(3)
      // an ack=accepted submission does not wait, so it is not bounded
      assert.strictEqual((yield* post("/sectors/7/ops", { ops: [set(5)] })).status, 202)

      // the waits end (the slow batch lands): their places are free again
      yield* faults.reset
      yield* advanceUntil(Effect.map(Effect.all([isDone(first), isDone(second)]), ([a, b]) => a && b), "1 second")
      assert.deepStrictEqual([(yield* Fiber.join(first)).status, (yield* Fiber.join(second)).status], [200, 200])
      const after = yield* post("/sectors/7/ops?ack=durable", { ops: [set(6)] })
      assert.strictEqual(after.status, 200, after.text)
      assert.strictEqual(after.body.lastSeq, 5)
    }).pipe(Effect.provide(serve({ host: { maxDurableWaiters: 2, durableTimeout: Duration.minutes(1) } }))))
})

describe("the server's limits", () => {
  it.effect("sets the configured timeouts and connection cap on the Node server, not Node's implicit defaults", () =>
    Effect.sync(() => {
      const server = Http.makeServer({
        ...HostConfig.defaults,
        headersTimeout: Duration.seconds(7),
        requestTimeout: Duration.seconds(11),
        keepAliveTimeout: Duration.millis(1500),
        maxConnections: 321
      })
      assert.deepStrictEqual(
        [server.headersTimeout, server.requestTimeout, server.keepAliveTimeout, server.maxConnections],
        [7000, 11_000, 1500, 321]
      )
    }))

  it.effect("never lets the headers' limit exceed the whole request's, and reads Infinity as no limit", () =>
    Effect.sync(() => {
      const clamped = Http.makeServer({
        ...HostConfig.defaults,
        headersTimeout: Duration.seconds(30),
        requestTimeout: Duration.seconds(10)
      })
      assert.deepStrictEqual([clamped.headersTimeout, clamped.requestTimeout], [10_000, 10_000])
      const unlimited = Http.makeServer({ ...HostConfig.defaults, requestTimeout: Duration.infinity })
      assert.deepStrictEqual([unlimited.headersTimeout, unlimited.requestTimeout], [60_000, 0])
    }))

  it.live("closes a connection past maxConnections while the ones within it are served", () =>
    Effect.gen(function*() {
      const server = Http.makeServer({ ...HostConfig.defaults, maxConnections: 1 })
      server.on("request", (_request, response) => response.end("ok"))
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.sync(() => server.closeAllConnections()).pipe(Effect.andThen(Effect.sync(() => server.close())))
      )
      const port = (server.address() as { port: number }).port
      const held = connect(port, "127.0.0.1")
      yield* Effect.callback<void>((resume) => {
        held.on("connect", () => resume(Effect.void))
      })
      yield* eventually(Effect.promise(() =>
        new Promise<boolean>((resolve) => server.getConnections((_, count) => resolve(count === 1)))
      ))
      const refused = yield* Effect.promise(() =>
        new Promise<string>((resolve) => {
          const request = httpRequest({ host: "127.0.0.1", port, path: "/", agent: false }, (response) => {
            response.resume()
            resolve(`answered ${response.statusCode}`)
          })
          request.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
          request.end()
        })
      )
      assert.include(["ECONNRESET", "EPIPE", "socket hang up"], refused)
      held.destroy()
    }).pipe(Effect.scoped))
})

/** A body of `bytes` bytes that is otherwise a valid submission. */
const padded = (bytes: number) => {
  const head = `{"ops":[{"type":"set","entity":1,"component":"c","data":{"pad":"`
  const tail = `"}}]}`
  return head + "x".repeat(bytes - head.length - tail.length) + tail
}

interface Malformed {
  readonly name: string
  readonly path?: string
  readonly body?: unknown
  readonly bytes?: Uint8Array
  readonly chunked?: boolean
  readonly status: 400 | 413
  readonly errors: ReadonlyArray<{ readonly index?: number; readonly field: string }>
}

const malformed: ReadonlyArray<Malformed> = [
  { name: "malformed JSON", body: `{"ops": [`, status: 400, errors: [{ field: "body" }] },
  { name: "an empty body", body: "", status: 400, errors: [{ field: "body" }] },
  { name: "a body that is an array", body: [set(1)], status: 400, errors: [{ field: "body" }] },
  { name: "a body that is null", body: "null", status: 400, errors: [{ field: "body" }] },
  { name: "a body without ops", body: {}, status: 400, errors: [{ field: "ops" }] },
  { name: "ops that are not an array", body: { ops: set(1) }, status: 400, errors: [{ field: "ops" }] },
  { name: "no ops at all", body: { ops: [] }, status: 400, errors: [{ field: "ops" }] },
  { name: "an excess field in the body", body: { ops: [set(1)], when: 1 }, status: 400, errors: [{ field: "when" }] },
  { name: "an entity that is a string", body: { ops: [{ ...set(1), entity: "1" }] }, status: 400, errors: [{ index: 0, field: "entity" }] },
  { name: "a negative entity", body: { ops: [set(-1)] }, status: 400, errors: [{ index: 0, field: "entity" }] },
  { name: "an unsafe entity", body: { ops: [set(2 ** 53)] }, status: 400, errors: [{ index: 0, field: "entity" }] },
  { name: "a non-integer entity", body: { ops: [set(1.5)] }, status: 400, errors: [{ index: 0, field: "entity" }] },
  { name: "a component name with a space", body: { ops: [set(1, "hit points")] }, status: 400, errors: [{ index: 0, field: "component" }] },
  { name: "a component name of 65 characters", body: { ops: [set(1, "c".repeat(65))] }, status: 400, errors: [{ index: 0, field: "component" }] },
  { name: "a component that is a number", body: { ops: [{ ...set(1), component: 5 }] }, status: 400, errors: [{ index: 0, field: "component" }] },
  { name: "data that is not an object", body: { ops: [{ ...set(1), data: [1, 2] }] }, status: 400, errors: [{ index: 0, field: "data" }] },
  { name: "an unknown op type", body: { ops: [{ type: "explode", entity: 1 }] }, status: 400, errors: [{ index: 0, field: "type" }] },
  { name: "an op without a type", body: { ops: [{ entity: 1 }] }, status: 400, errors: [{ index: 0, field: "type" }] },
  { name: "an excess field in an op", body: { ops: [{ ...set(1), ttl: 5 }] }, status: 400, errors: [{ index: 0, field: "ttl" }] },
  {
    name: "data on a remove",
    body: { ops: [{ type: "remove", entity: 1, component: "c", data: {} }] },
    status: 400,
    errors: [{ index: 0, field: "data" }]
  },
  {
    name: "a worker with a space",
    body: { ops: [{ type: "authority", entity: 1, component: "c", worker: "w 7" }] },
    status: 400,
    errors: [{ index: 0, field: "worker" }]
  },
  {
    name: "two bad ops after a good one",
    body: { ops: [set(1), set(-2), { type: "delete" }] },
    status: 400,
    errors: [{ index: 1, field: "entity" }, { index: 2, field: "entity" }]
  },
  { name: "a negative sector", path: "/sectors/-1/ops", body: { ops: [set(1)] }, status: 400, errors: [{ field: "sector" }] },
  { name: "an unsafe sector", path: "/sectors/9007199254740992/ops", body: { ops: [set(1)] }, status: 400, errors: [{ field: "sector" }] },
  { name: "a non-integer sector", path: "/sectors/1.5/ops", body: { ops: [set(1)] }, status: 400, errors: [{ field: "sector" }] },
  { name: "a sector that is not a number", path: "/sectors/abc/ops", body: { ops: [set(1)] }, status: 400, errors: [{ field: "sector" }] },
  { name: "an unknown ack", path: "/sectors/7/ops?ack=eventually", body: { ops: [set(1)] }, status: 400, errors: [{ field: "ack" }] },
  {
    name: "a bad sector, ack and op together",
    path: "/sectors/x/ops?ack=soon",
    body: { ops: [set(1, "bad name")] },
    status: 400,
    errors: [{ field: "sector" }, { field: "ack" }, { index: 0, field: "component" }]
  },
  { name: "a body over maxBodyBytes", body: padded(limits.maxBodyBytes + 1), status: 413, errors: [{ field: "body" }] },
  {
    name: "a chunked body over maxBodyBytes",
    body: padded(limits.maxBodyBytes + 1),
    chunked: true,
    status: 413,
    errors: [{ field: "body" }]
  },
  {
    name: "more ops than maxOpsPerRequest",
    body: { ops: Array.from({ length: limits.maxOpsPerRequest + 1 }, (_, i) => set(i)) },
    status: 413,
    errors: [{ field: "ops" }]
  },
  {
    name: "a body nested deeper than maxJsonDepth",
    // body, ops, op, data: 4 levels, then maxJsonDepth more
    body: `{"ops":[{"type":"set","entity":1,"component":"c","data":{"a":${"[".repeat(Http.maxJsonDepth)}${
      "]".repeat(Http.maxJsonDepth)
    }}}]}`,
    status: 413,
    errors: [{ field: "body" }]
  },
  {
    name: "brackets nested 2,000 deep (no stack overflow)",
    body: "[".repeat(2000) + "]".repeat(2000),
    status: 413,
    errors: [{ field: "body" }]
  },
  {
    name: "data with a lone surrogate (valid JSON PostgreSQL cannot store)",
    body: `{"ops":[${JSON.stringify(set(1))},{"type":"set","entity":2,"component":"c","data":{"name":"\\ud800"}}]}`,
    status: 400,
    errors: [{ index: 1, field: "data" }]
  },
  {
    name: "a lone surrogate in a key of data",
    body: `{"ops":[{"type":"set","entity":1,"component":"c","data":{"\\udfff":1}}]}`,
    status: 400,
    errors: [{ index: 0, field: "data" }]
  },
  {
    name: "a lone surrogate beside data over maxDataBytes (the limit is judged first)",
    body: `{"ops":[{"type":"set","entity":1,"component":"c","data":{"s":"\\ud800"}},${
      JSON.stringify(set(2, "c", { pad: "x".repeat(300) }))
    }]}`,
    status: 413,
    errors: [{ index: 1, field: "data" }]
  },
  {
    name: "a body that is not UTF-8",
    // 0xc3 opens a two-byte sequence; 0x28 cannot continue it
    bytes: Buffer.concat([Buffer.from(`{"ops":[{"type":"set","entity":1,"component":"c","data":{"s":"`), Buffer.of(0xc3, 0x28), Buffer.from(`"}}]}`)]),
    status: 400,
    errors: [{ field: "body" }]
  },
  {
    name: "data over maxDataBytes",
    body: { ops: [set(1), set(2, "c", { pad: "x".repeat(300) }), set(3), set(4, "c", { pad: "y".repeat(300) })] },
    status: 413,
    errors: [{ index: 1, field: "data" }, { index: 3, field: "data" }]
  }
]

describe("malformed submissions", () => {
  it.effect.each(malformed)("answers $status naming the field for $name, and applies nothing", (bad) =>
    Effect.gen(function*() {
      assert.strictEqual((yield* post("/sectors/7/ops", { ops: [set(1)] })).status, 202)
      const path = bad.path ?? "/sectors/7/ops"
      const reply = bad.bytes !== undefined
        ? yield* send(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyUint8Array(bad.bytes, "application/json")))
        : bad.chunked
        ? yield* send(HttpClientRequest.post(path).pipe(
          HttpClientRequest.bodyStream(Stream.make(new TextEncoder().encode(bad.body as string)), {
            contentType: "application/json"
          })
        ))
        : yield* post(path, bad.body)
      assertProblem(reply, bad.status, bad.errors)
      yield* assertUnchanged(1)
    }).pipe(Effect.provide(serve())))

  it.effect("lists every bad op of a submission, with its index and field", () =>
    Effect.gen(function*() {
      const reply = yield* post("/sectors/7/ops", { ops: [set(1), set(-1), set(2, "no good"), { type: "nope" }] })
      assertProblem(reply, 400)
      assert.deepStrictEqual(
        reply.body.errors.map((error: { index?: number; field: string }) => [error.index, error.field]),
        [[1, "entity"], [2, "component"], [3, "type"]]
      )
    }).pipe(Effect.provide(serve())))
})

describe("limits at their edge", () => {
  it.effect("accepts a body nested exactly maxJsonDepth levels deep", () =>
    Effect.gen(function*() {
      // body, ops, op, data: 4 levels, then arrays up to maxJsonDepth
      const arrays = Http.maxJsonDepth - 4
      const data = `{"a":${"[".repeat(arrays)}${"]".repeat(arrays)}}`
      const reply = yield* post("/sectors/7/ops", `{"ops":[{"type":"set","entity":1,"component":"c","data":${data}}]}`)
      assert.strictEqual(reply.status, 202, reply.text)
    }).pipe(Effect.provide(serve())))

  it.effect("accepts data with surrogate pairs, and text that only looks like a lone surrogate's escape", () =>
    Effect.gen(function*() {
      // an emoji as a pair of escapes, and a backslash followed by the letters u d 8 0 0
      const data = String.raw`{"\ud83d\ude00":["\ud83d\ude00"],"text":"\\ud800","key":{"\\udfff":1}}`
      const reply = yield* post("/sectors/7/ops", `{"ops":[{"type":"set","entity":1,"component":"c","data":${data}}]}`)
      assert.strictEqual(reply.status, 202, reply.text)
      const entity = yield* get("/sectors/7/entities/1")
      assert.deepStrictEqual(entity.body.components.c, {
        "\u{1F600}": ["\u{1F600}"],
        text: "\\ud800",
        key: { "\\udfff": 1 }
      })
    }).pipe(Effect.provide(serve())))
})

/** Sends `raw` bytes to a fresh `Http.makeServer` (default limits) on loopback; returns what came back before it closed. */
const rawExchange = (raw: string) =>
  Effect.acquireUseRelease(
    Effect.callback<Server>((resume) => {
      const server = Http.makeServer(HostConfig.defaults)
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<string>((resume) => {
        const { port } = server.address() as { port: number }
        const socket = connect(port, "127.0.0.1", () => socket.end(raw))
        const chunks: Array<Buffer> = []
        socket.on("data", (chunk) => chunks.push(chunk))
        socket.on("close", () => resume(Effect.succeed(Buffer.concat(chunks).toString("utf8"))))
      }),
    (server) => Effect.callback<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
  )

describe("requests Node's HTTP parser refuses", () => {
  it.live.each([
    ["an unknown method", 400, "BREW /sectors/1 HTTP/1.1\r\nHost: x\r\n\r\n"],
    ["a malformed request line", 400, "GET /sectors/1 HTTX/9\r\n\r\n"],
    ["a header with a space in its name", 400, "GET / HTTP/1.1\r\nBad Header: 1\r\n\r\n"],
    ["a malformed Content-Length", 400, "POST /sectors/1/ops HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"],
    ["headers over 16 KiB", 431, `GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ${"p".repeat(20_000)}\r\n\r\n`]
  ] as const)("answers %s with a %i problem", ([, status, raw]) =>
    Effect.gen(function*() {
      const answer = yield* rawExchange(raw)
      const [head = "", body = ""] = answer.split("\r\n\r\n")
      assert.match(head, new RegExp(`^HTTP/1\\.1 ${status} `), answer)
      assert.match(head, /content-type: application\/problem\+json/i)
      const problem = JSON.parse(body)
      assert.strictEqual(problem.status, status)
      assert.isString(problem.type)
      assert.isString(problem.title)
      assert.isString(problem.detail)
    }))
})

describe("GET /sectors/{sector}/entities/{entity}", () => {
  it.effect("returns an entity's components, authority and latest seq", () =>
    Effect.gen(function*() {
      yield* post("/sectors/2/ops", {
        ops: [
          set(42, "position", { x: 1, y: 2 }),
          set(42, "hp", { value: 10 }),
          { type: "authority", entity: 42, component: "position", worker: "w-7" },
          { type: "remove", entity: 42, component: "hp" }
        ]
      })
      const reply = yield* get("/sectors/2/entities/42")
      assert.strictEqual(reply.status, 200)
      assert.deepStrictEqual(reply.body, {
        sector: 2,
        entity: 42,
        components: { position: { x: 1, y: 2 } },
        authority: { position: "w-7" },
        seq: 3
      })
    }).pipe(Effect.provide(serve())))

  it.effect("answers 404 for an entity that has nothing, and 400 for an id that is not one", () =>
    Effect.gen(function*() {
      yield* post("/sectors/2/ops", { ops: [set(1), { type: "delete", entity: 1 }] })
      assertProblem(yield* get("/sectors/2/entities/1"), 404)
      assertProblem(yield* get("/sectors/2/entities/99"), 404)
      assertProblem(yield* get("/sectors/2/entities/-5"), 400, [{ field: "entity" }])
      assertProblem(yield* get("/sectors/1e3/entities/1"), 400, [{ field: "sector" }])
    }).pipe(Effect.provide(serve())))
})

describe("GET /sectors/{sector} and GET /sectors", () => {
  it.effect("reports a sector's queue, pending, in-flight, watermark, counters and circuit", () =>
    Effect.gen(function*() {
      const fresh = yield* get("/sectors/9")
      assert.strictEqual(fresh.status, 200)
      assert.strictEqual(fresh.body.persistedAt, null)
      yield* post("/sectors/4/ops?ack=durable", { ops: [set(1), set(2), set(1)] })
      const reply = yield* get("/sectors/4")
      assert.strictEqual(reply.status, 200)
      // `awake`: its run lingers until the next maxWait grid point after the batch, then ends
      const { awake, persistedAt, counters, ...rest } = reply.body
      assert.isBoolean(awake)
      assert.isString(persistedAt)
      assert.isFalse(Number.isNaN(Date.parse(persistedAt)))
      assert.deepStrictEqual(
        { received: counters.received, persisted: counters.persisted, batches: counters.batches },
        { received: 3, persisted: 3, batches: 1 }
      )
      assert.deepStrictEqual(rest, {
        sector: 4,
        phase: "running",
        epoch: 1,
        mailboxDepth: 0,
        mailboxCapacity: 1024,
        pendingOps: 0,
        pendingKeys: 0,
        maxPendingKeys: 1000,
        oldestPendingMillis: 0,
        inFlightOps: 0,
        lastSeq: 3,
        persistedSeq: 3,
        entities: 2,
        circuit: { state: "Closed" }
      })
    }).pipe(Effect.provide(serve())))

  it.effect("answers 503 residency-full with Retry-After when every resident sector holds unflushed ops", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* post("/sectors/1/ops", { ops: [set(1)] })).status, 202)
      const full = yield* post("/sectors/2/ops", { ops: [set(1)] })
      assert.strictEqual(full.status, 503)
      assert.strictEqual(full.body.type, "urn:sectors:problem:residency-full")
      assert.deepStrictEqual([full.body.sector, full.body.maxActiveSectors], [2, 1])
      assert.strictEqual(full.headers["retry-after"], "1")
      // reads of another sector are still answered, from the sink, without taking a place
      const passive = yield* get("/sectors/3")
      assert.deepStrictEqual([passive.status, passive.body.phase, passive.body.epoch], [200, "passive", 0])
    }).pipe(Effect.provide(serve({ sectors: { maxActiveSectors: 1, policy: policy({ minBatch: 100, maxWait: "1 hour" }) } }))))

  it.effect("lists the resident sectors with one summary each, and the residency cap", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual((yield* get("/sectors")).body, { active: 0, maxActiveSectors: 100_000, sectors: [] })
      yield* post("/sectors/5/ops", { ops: [set(1), set(2)] })
      yield* post("/sectors/2/ops", { ops: [set(1)] })
      const reply = yield* get("/sectors")
      assert.strictEqual(reply.status, 200)
      assert.deepStrictEqual([reply.body.active, reply.body.maxActiveSectors], [2, 100_000])
      assert.deepStrictEqual(reply.body.sectors.map((s: any) => [s.sector, s.phase, s.lastSeq, s.entities]), [
        [2, "running", 1, 1],
        [5, "running", 2, 2]
      ])
      for (const summary of reply.body.sectors) {
        assert.deepStrictEqual(Object.keys(summary).sort(), [
          "entities",
          "lastSeq",
          "mailboxDepth",
          "pendingOps",
          "persistedSeq",
          "phase",
          "sector"
        ])
      }
    }).pipe(Effect.provide(serve({ sectors: { policy: policy({ minBatch: 100, maxWait: "1 hour" }) } }))))
})

describe("POST /sectors/{sector}/flush", () => {
  it.effect("answers once everything accepted so far is durable, with the watermark", () =>
    Effect.gen(function*() {
      const store = yield* MemorySink.MemorySink
      yield* post("/sectors/1/ops", { ops: [set(1), set(2), set(3)] })
      assert.strictEqual(store.sector(1)?.persistedSeq, 0)
      const reply = yield* post("/sectors/1/flush")
      assert.strictEqual(reply.status, 200)
      assert.deepStrictEqual(reply.body, { sector: 1, persistedSeq: 3 })
      assert.strictEqual(store.sector(1)?.persistedSeq, 3)
    }).pipe(Effect.provide(serve({ sectors: { policy: policy({ minBatch: 100, maxWait: "1 hour" }) } }))))
})

describe("GET /sectors/{sector}/dead-letters", () => {
  it.effect("lists the ops the sink rejected, with seq, error, code and time", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      yield* faults.poison((entry) => entry.entity === 13)
      const reply = yield* post("/sectors/1/ops?ack=durable", { ops: [set(12), set(13, "c", { bad: true }), set(14)] })
      assert.strictEqual(reply.status, 200)
      const letters = yield* get("/sectors/1/dead-letters")
      assert.strictEqual(letters.status, 200)
      assert.strictEqual(letters.body.sector, 1)
      assert.strictEqual(letters.body.deadLetters.length, 1)
      const [letter] = letters.body.deadLetters
      assert.deepStrictEqual(
        { seq: letter.seq, entry: letter.entry, error: letter.error, code: letter.code },
        {
          seq: 2,
          entry: { type: "set", entity: 13, component: "c", data: { bad: true } },
          error: "injected: entry rejected",
          code: "22P05"
        }
      )
      assert.isFalse(Number.isNaN(Date.parse(letter.at)))
      assert.strictEqual((yield* get("/sectors/1/entities/12")).status, 200)
      assertProblem(yield* get("/sectors/1/entities/13"), 404)
      assert.deepStrictEqual((yield* get("/sectors/2/dead-letters")).body, { sector: 2, deadLetters: [] })
    }).pipe(Effect.provide(serve())))
})

describe("routing", () => {
  it.effect("answers an unknown route with a 404 problem", () =>
    Effect.gen(function*() {
      assertProblem(yield* get("/nowhere"), 404)
      assertProblem(yield* get("/sectors/1/elsewhere"), 404)
      assertProblem(yield* post("/healthz/now"), 404)
    }).pipe(Effect.provide(serve())))

  it.effect.each([
    ["DELETE", "/sectors/1", "GET, HEAD, OPTIONS"],
    ["GET", "/sectors/1/ops", "POST, OPTIONS"],
    ["PUT", "/sectors/1/flush", "POST, OPTIONS"],
    ["POST", "/metrics", "GET, HEAD, OPTIONS"],
    ["PATCH", "/sectors", "GET, HEAD, OPTIONS"],
    ["PROPFIND", "/sectors/1", "GET, HEAD, OPTIONS"],
    ["LOCK", "/healthz", "GET, HEAD, OPTIONS"]
  ] as const)("answers %s %s with a 405 problem allowing %s", ([method, path, allow]) =>
    Effect.gen(function*() {
      // WebDAV methods are outside the client's method type; the server sees them as sent
      const reply = yield* send(HttpClientRequest.make(method as "DELETE")(path))
      assertProblem(reply, 405)
      assert.strictEqual(reply.headers["allow"], allow)
    }).pipe(Effect.provide(serve())))

  it.effect("answers HEAD as GET where GET is, and with a 405 allowing the path's methods where it is not", () =>
    Effect.gen(function*() {
      const head = yield* send(HttpClientRequest.head("/sectors/1"))
      assert.deepStrictEqual([head.status, head.headers["content-type"], head.text], [200, "application/json", ""])
      const refused = yield* send(HttpClientRequest.head("/sectors/1/ops"))
      assert.strictEqual(refused.status, 405)
      assert.strictEqual(refused.headers["allow"], "POST, OPTIONS")
      assert.strictEqual(refused.headers["content-type"], "application/problem+json")
      assert.strictEqual(refused.text, "") // a HEAD answer has no body
    }).pipe(Effect.provide(serve())))

  it.effect("answers OPTIONS with the allowed methods", () =>
    Effect.gen(function*() {
      const reply = yield* send(HttpClientRequest.options("/sectors/1/ops"))
      assert.strictEqual(reply.status, 204)
      assert.strictEqual(reply.headers["allow"], "POST, OPTIONS")
    }).pipe(Effect.provide(serve())))
})

describe("cluster", () => {
  it.effect("GET /cluster says a host without RUNNER_PORT is standalone", () =>
    Effect.gen(function*() {
      const reply = yield* get("/cluster")
      assert.strictEqual(reply.status, 200)
      assert.deepStrictEqual(reply.body, { mode: "standalone" })
    }).pipe(Effect.provide(serve())))
})

describe("health and readiness", () => {
  it.effect("answers /healthz always, and /readyz only between start-up and shutdown", () =>
    Effect.gen(function*() {
      const lifecycle = yield* Lifecycle.Lifecycle
      assert.deepStrictEqual((yield* get("/healthz")).body, { status: "ok" })
      const starting = yield* get("/readyz")
      assertProblem(starting, 503)
      assert.strictEqual(starting.body.reason, "starting")
      yield* lifecycle.markReady
      const ready = yield* get("/readyz")
      assert.strictEqual(ready.status, 200)
      assert.deepStrictEqual(ready.body, {
        status: "ready",
        phase: "ready",
        database: { reachable: true, downSince: null },
        buffer: { bytes: 0, budget: 256 * 1024 * 1024 },
        circuit: { state: "Closed" }
      })
      yield* lifecycle.requestShutdown
      const draining = yield* get("/readyz")
      assertProblem(draining, 503)
      assert.strictEqual(draining.body.reason, "draining")
      assert.strictEqual((yield* get("/healthz")).status, 200)
    }).pipe(Effect.provide(serve())))
})

/** Every sample line of a Prometheus text exposition: `name{labels} value`. */
const metricName = String.raw`[a-zA-Z_:][a-zA-Z0-9_:]*`
const label = String.raw`[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"`
const value = String.raw`NaN|[+-]Inf|[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?`
const sampleLine = new RegExp(String.raw`^${metricName}(?:\{${label}(?:,${label})*\})? (?:${value})$`)

const scrape = Effect.gen(function*() {
  const reply = yield* get("/metrics")
  assert.strictEqual(reply.status, 200)
  assert.match(reply.headers["content-type"] ?? "", /^text\/plain; version=0\.0\.4/)
  const samples = new Map<string, number>()
  for (const line of reply.text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    assert.match(line, sampleLine)
    const at = line.lastIndexOf(" ")
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return samples
})

describe("GET /metrics", () => {
  it.effect("exposes the metrics as Prometheus text, and ops received grow with posted ops", () =>
    Effect.gen(function*() {
      assert.notMatch("sectors_ops_received_total{reason=unquoted} 1", sampleLine)
      const before = (yield* scrape).get("sectors_ops_received_total") ?? 0
      assert.strictEqual((yield* post("/sectors/1/ops", { ops: [set(1), set(2), set(3)] })).status, 202)
      const after = yield* scrape
      assert.strictEqual(after.get("sectors_ops_received_total"), before + 3)
    }).pipe(Effect.provide(serve())))
})

describe("authentication (AUTH_TOKEN)", () => {
  const tokens = ["first-token", "second.token~2", "third+token/3=="]
  const secured = serve({ host: { authToken: tokens.map((token) => Redacted.make(token)) } })
  const getWith = (path: string, authorization: string) =>
    send(HttpClientRequest.get(path).pipe(HttpClientRequest.setHeader("authorization", authorization)))

  const assertUnauthorized = (reply: Reply) => {
    assertProblem(reply, 401)
    assert.strictEqual(reply.headers["www-authenticate"], "Bearer")
    assert.strictEqual(reply.body.type, "urn:sectors:problem:unauthorized")
    for (const token of tokens) assert.notInclude(reply.text, token)
  }

  it.effect.each([
    ["another scheme", "Basic Zmlyc3QtdG9rZW46"],
    ["a wrong token", "Bearer wrong-token"],
    ["a token's prefix", "Bearer first-tok"],
    ["a token with more after it", "Bearer first-token-and-more"],
    ["no token after the scheme", "Bearer "],
    ["two tokens", "Bearer first-token second.token~2"],
    ["the scheme glued to the token", "Bearerfirst-token"],
    ["a token of 8 KiB", `Bearer ${"x".repeat(8192)}`],
    ["a value of 12 KiB without a scheme", "y".repeat(12_288)]
  ] as const)("answers 401 with WWW-Authenticate: Bearer for %s", ([, authorization]) =>
    Effect.gen(function*() {
      assertUnauthorized(yield* getWith("/sectors", authorization))
      assertUnauthorized(yield* getWith("/metrics", authorization))
    }).pipe(Effect.provide(secured)))

  it.effect("answers 401 without an Authorization header on every route but /healthz and /readyz, unknown ones too", () =>
    Effect.gen(function*() {
      assertUnauthorized(yield* get("/sectors"))
      assertUnauthorized(yield* get("/sectors/1"))
      assertUnauthorized(yield* get("/sectors/1/entities/1"))
      assertUnauthorized(yield* get("/sectors/1/dead-letters"))
      assertUnauthorized(yield* get("/metrics"))
      assertUnauthorized(yield* get("/no/such/route"))
      assertUnauthorized(yield* post("/sectors/1/ops", { ops: [set(1)] }))
      assertUnauthorized(yield* post("/sectors/1/flush"))
      assert.strictEqual((yield* stats(1)).lastSeq, 0, "nothing was applied")
      assert.strictEqual((yield* get("/healthz")).status, 200)
      assert.strictEqual((yield* get("/healthz?probe=1")).status, 200)
      assertProblem(yield* get("/readyz"), 503) // starting: answered, not refused
    }).pipe(Effect.provide(secured)))

  it.effect("serves a request with any of the rotated tokens as without authentication", () =>
    Effect.gen(function*() {
      for (const [index, token] of tokens.entries()) {
        const posted = yield* send(
          HttpClientRequest.post("/sectors/4/ops").pipe(
            HttpClientRequest.bodyJsonUnsafe({ ops: [set(index + 1)] }),
            HttpClientRequest.setHeader("authorization", `Bearer ${token}`)
          )
        )
        assert.strictEqual(posted.status, 202, posted.text)
        assert.strictEqual(posted.body.lastSeq, index + 1)
        assert.strictEqual((yield* getWith("/sectors/4", `bearer ${token}`)).status, 200, "the scheme is case-insensitive")
        assert.strictEqual((yield* getWith("/metrics", `Bearer ${token}`)).status, 200)
      }
      assertProblem(yield* getWith("/no/such/route", `Bearer ${tokens[0]}`), 404)
    }).pipe(Effect.provide(secured)))

  it.effect("asks nothing when no token is configured", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* get("/sectors")).status, 200)
      assert.strictEqual((yield* getWith("/sectors", "Bearer anything")).status, 200)
    }).pipe(Effect.provide(serve())))
})

/**
 * A request by node:http, exactly as given: fetch does not let a client choose `Host`, and adds a content type to a
 * text body that has none.
 */
const exchange = (method: string, path: string, headers: Record<string, string>, body?: string) =>
  Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    const address = server.address as { readonly port: number }
    return yield* Effect.callback<Reply>((resume) => {
      const request = httpRequest({ host: "127.0.0.1", port: address.port, method, path, headers }, (response) => {
        let text = ""
        response.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")))
        response.on("end", () =>
          resume(Effect.succeed({
            status: response.statusCode ?? 0,
            headers: { "content-type": response.headers["content-type"], connection: response.headers.connection },
            text,
            body: JSON.parse(text)
          }))
        )
      })
      request.end(body)
    })
  })

const getWithHost = (path: string, host: string) => exchange("GET", path, { host })

const postWith = (path: string, contentType: string | undefined, body: string) =>
  exchange("POST", path, contentType === undefined ? {} : { "content-type": contentType }, body)

describe("requests a browser could send on another site's behalf", () => {
  const ops = JSON.stringify({ ops: [set(1)] })

  it.effect.each([
    ["text/plain", "text/plain;charset=UTF-8"],
    ["a form", "application/x-www-form-urlencoded"],
    ["multipart", "multipart/form-data; boundary=x"],
    ["XML", "application/xml"],
    ["JSON's prefix", "application/jsonp"],
    ["no content type", undefined]
  ] as const)("answers a POST body sent as %s with 415, and applies nothing", ([, contentType]) =>
    Effect.gen(function*() {
      const reply = yield* postWith("/sectors/7/ops", contentType, ops)
      assertProblem(reply, 415)
      assert.strictEqual(reply.body.type, "urn:sectors:problem:unsupported-media-type")
      assertProblem(yield* postWith("/sectors/7/flush", contentType, "{}"), 415)
      assert.strictEqual((yield* stats(7)).lastSeq, 0)
    }).pipe(Effect.provide(serve())))

  it.effect("refuses a non-JSON body before reading it: 415 even when it is over maxBodyBytes", () =>
    Effect.gen(function*() {
      const reply = yield* postWith("/sectors/7/ops", "text/plain", "x".repeat(limits.maxBodyBytes * 2))
      assertProblem(reply, 415)
      // the body was never read: the connection closes, so no client sends its next request onto it
      assert.strictEqual(reply.headers["connection"], "close")
    }).pipe(Effect.provide(serve())))

  it.effect("accepts application/json with a charset, in any case, and a POST without a body or type", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* postWith("/sectors/7/ops", "application/json; charset=utf-8", ops)).status, 202)
      assert.strictEqual((yield* postWith("/sectors/7/ops", "Application/JSON", ops)).status, 202)
      assert.strictEqual((yield* post("/sectors/7/flush")).status, 200)
    }).pipe(Effect.provide(serve())))

  it.effect("answers 421 on a loopback bind to a Host header naming another host, with or without a port", () =>
    Effect.gen(function*() {
      for (const host of ["evil.example", "evil.example:8080", "127.0.0.1.nip.io", "10.0.0.1:80", "[::2]:80", "localhost.evil"]) {
        const reply = yield* getWithHost("/sectors", host)
        assert.strictEqual(reply.status, 421, host)
        assert.strictEqual(reply.body.type, "urn:sectors:problem:misdirected-request")
      }
      for (const host of ["127.0.0.1", "127.0.0.1:8080", "localhost", "localhost:8080", "[::1]:8080", "[::1]"]) {
        assert.strictEqual((yield* getWithHost("/sectors", host)).status, 200, host)
      }
    }).pipe(Effect.provide(serve())))

  it.effect("serves any Host header when bound beyond loopback (a token protects it then)", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* getWithHost("/sectors", "sectors.internal:8080")).status, 200)
    }).pipe(Effect.provide(serve({ host: { host: "0.0.0.0" } }))))

  it.effect("sends no CORS headers when CORS_ORIGINS is unset, not even to a preflight", () =>
    Effect.gen(function*() {
      const simple = yield* send(HttpClientRequest.get("/sectors").pipe(HttpClientRequest.setHeader("origin", "https://app.example")))
      assert.strictEqual(simple.status, 200)
      const preflight = yield* send(HttpClientRequest.options("/sectors/1/ops").pipe(HttpClientRequest.setHeaders({
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type"
      })))
      for (const reply of [simple, preflight]) {
        assert.deepStrictEqual(Object.keys(reply.headers).filter((name) => name.startsWith("access-control-")), [])
      }
    }).pipe(Effect.provide(serve())))

  it.effect("answers preflights and allows the origins CORS_ORIGINS lists, only those, also with a token required", () =>
    Effect.gen(function*() {
      const preflight = (origin: string) =>
        send(HttpClientRequest.options("/sectors/1/ops").pipe(HttpClientRequest.setHeaders({
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type"
        })))
      const listed = yield* preflight("https://app.example")
      assert.strictEqual(listed.status, 204)
      assert.strictEqual(listed.headers["access-control-allow-origin"], "https://app.example")
      assert.include(listed.headers["access-control-allow-methods"] ?? "", "POST")
      assert.include(listed.headers["access-control-allow-headers"] ?? "", "authorization")
      const other = yield* preflight("https://evil.example")
      assert.isUndefined(other.headers["access-control-allow-origin"])

      const withOrigin = (origin: string, authorization?: string) =>
        send(HttpClientRequest.get("/sectors").pipe(
          HttpClientRequest.setHeaders({ origin, ...(authorization === undefined ? {} : { authorization }) })
        ))
      const allowed = yield* withOrigin("https://app.example", "Bearer cors-token")
      assert.strictEqual(allowed.status, 200)
      assert.strictEqual(allowed.headers["access-control-allow-origin"], "https://app.example")
      const refused = yield* withOrigin("https://app.example")
      assertProblem(refused, 401)
      assert.strictEqual(refused.headers["access-control-allow-origin"], "https://app.example", "the page may read why")
      const stranger = yield* withOrigin("https://evil.example", "Bearer cors-token")
      assert.strictEqual(stranger.status, 200)
      assert.isUndefined(stranger.headers["access-control-allow-origin"])
    }).pipe(Effect.provide(serve({
      host: { corsOrigins: ["https://app.example"], authToken: [Redacted.make("cors-token")] }
    }))))
})

describe("no internals in answers", () => {
  /** Every log line, as its level and its messages joined. */
  const captured: Array<{ readonly level: string; readonly text: string }> = []
  const capture = Logger.layer([
    Logger.make(({ logLevel, message }) => {
      const parts = Array.isArray(message) ? message : [message]
      captured.push({
        level: logLevel,
        text: parts.map((part) => (part instanceof Error ? `${part.message}` : String(part))).join(" ")
      })
    })
  ])

  it.effect("answers a read the database cannot serve with a detail that names no cause, and logs the cause under the instance id", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      yield* faults.outage("1 hour")
      const reading = yield* Effect.forkChild(get("/sectors/5/dead-letters"))
      yield* advanceUntil(isDone(reading), "10 millis")
      const reply = yield* Fiber.join(reading)
      assertProblem(reply, 503)
      assert.strictEqual(reply.body.type, "urn:sectors:problem:sink-unavailable")
      assert.strictEqual(reply.body.detail, "the database is unavailable; retry later")
      assert.notMatch(reply.text, /injected|outage|ECONN|\d+\.\d+\.\d+\.\d+|SELECT|relation|role/i)
      assert.match(reply.body.instance, /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
      const lines = captured.filter((line) => line.text.includes(reply.body.instance))
      assert.strictEqual(lines.length, 1, JSON.stringify(captured))
      assert.include(lines[0]!.text, "injected outage", "the cause is in the log")
      assert.strictEqual(lines[0]!.level, "Warn")

      const again = yield* Effect.forkChild(get("/sectors/6/dead-letters"))
      yield* advanceUntil(isDone(again), "10 millis")
      const second = yield* Fiber.join(again)
      assertProblem(second, 503)
      assert.notStrictEqual(second.body.instance, reply.body.instance, "another incident, another id")
    }).pipe(Effect.provide(serve().pipe(Layer.provide(capture)))))
})
