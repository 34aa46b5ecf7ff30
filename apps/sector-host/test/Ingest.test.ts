/**
 * `/ingest` as a producer sees it: `Http.routes` on a real Node HTTP server with the host's WebSocket options, a real
 * WebSocket client (Node's global `WebSocket`), over a host on the core test kit's memory sink with fault injection.
 * Frames and answers are real I/O; what depends on time (a slow sink, durable waits) runs on the TestClock. Where a
 * frame makes a mistake a POST can make too, its error is compared with the HTTP API's problem for the same mistake.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { BatchPolicy, SectorHost, type SectorsConfig } from "@sectors/core"
import { FaultSink, MemorySink, TestHost } from "@sectors/core/testing"
import { Duration, Effect, Layer, Metric, Redacted } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { TestClock } from "effect/testing"
import * as http from "node:http"
import * as HostConfig from "../src/HostConfig.ts"
import * as Http from "../src/Http.ts"
import * as Ingest from "../src/Ingest.ts"
import * as Lifecycle from "../src/Lifecycle.ts"
import * as Sectors from "../src/Sectors.ts"
import { advanceUntil, eventually } from "./waiting.ts"

// ---- set-up: the routes on a real Node server with the host's WebSocket options, over the memory sink ----

const limits = { maxBodyBytes: 4096, maxOpsPerRequest: 10, maxDataBytes: 256 }

const policy = BatchPolicy.BatchPolicy.make({
  minBatch: 1,
  maxBatch: 100,
  maxWait: Duration.millis(10),
  maxPendingKeys: 1000
})

const serve = (
  options: {
    readonly host?: Partial<HostConfig.HostConfig["Service"]>
    readonly sectors?: Partial<SectorsConfig.SectorsConfig["Service"]>
    readonly routing?: Layer.Layer<Sectors.Sectors, never, SectorHost.SectorHost>
  } = {}
) =>
  HttpRouter.serve(Http.routes, { disableListenLog: true, disableLogger: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(() => Http.makeServer({ ...HostConfig.defaults, ...options.host }), {
      host: "127.0.0.1",
      port: 0,
      websocket: Ingest.websocketOptions(limits)
    })),
    Layer.provideMerge(options.routing ?? Sectors.layerLocal),
    Layer.provideMerge(TestHost.layer({
      policy,
      retryMaxDelay: Duration.millis(10),
      retryDeadline: Duration.millis(50),
      ...options.sectors
    })),
    Layer.provideMerge(Lifecycle.layer),
    Layer.provideMerge(HostConfig.layer({ ...limits, durableTimeout: Duration.minutes(5), ...options.host }))
  )

/**
 * The way to the sectors with a delay on each submission that shrinks from one call to the next (on the TestClock):
 * what a cluster's forwarding can do, where one call overtakes another on its way to the owner.
 */
const overtaking: Layer.Layer<Sectors.Sectors, never, SectorHost.SectorHost> = Layer.effect(Sectors.Sectors)(
  Effect.gen(function*() {
    const inner = yield* Sectors.Sectors
    let calls = 0
    return Sectors.Sectors.of({
      ...inner,
      trySubmit: () => undefined, // as in a cluster: every frame goes the way that can overtake
      trySubmitDurable: () => undefined,
      submit: (sector, ops, options) =>
        Effect.andThen(Effect.sleep(Duration.millis(20 - (calls++ % 20))), inner.submit(sector, ops, options))
    })
  })
).pipe(Layer.provide(Sectors.layerLocal))

const port = Effect.map(HttpServer.HttpServer, (server) => (server.address as { readonly port: number }).port)

// ---- waiting (see ./waiting.ts) ----

/** Lets real I/O happen for a while, the TestClock standing still. */
const settle = TestClock.withLive(Effect.sleep(Duration.millis(100)))

/**
 * The sink held (`slow`) for the test, released however it ends: the host's shutdown flushes, and the TestClock stands
 * still for the held persists otherwise.
 */
const holdSink = (duration: Duration.Input) =>
  Effect.gen(function*() {
    const faults = yield* FaultSink.Faults
    yield* Effect.addFinalizer(() => faults.reset.pipe(Effect.andThen(TestClock.adjust(duration))))
    yield* faults.slow(duration)
  })

const stats = (sector: number) => Effect.flatMap(SectorHost.SectorHost, (host) => host.stats(sector))

// ---- a WebSocket client ----

interface Client {
  readonly socket: WebSocket
  /** Every answer received so far, parsed. */
  readonly answers: Array<any>
  /** The close the client saw, once it did. */
  readonly closed: { code?: number; reason?: string }
  readonly send: (frame: unknown) => void
  /** Waits until `count` answers arrived, and returns them. */
  readonly received: (count: number) => Effect.Effect<ReadonlyArray<any>>
  /** The answer to the frame `id`, waiting for it. */
  readonly answerTo: (id: string | number) => Effect.Effect<any>
}

const connect = (headers?: Record<string, string>) =>
  Effect.gen(function*() {
    const url = `ws://127.0.0.1:${yield* port}/ingest`
    const socket = yield* Effect.acquireRelease(
      Effect.callback<WebSocket, Error>((resume) => {
        const socket = new WebSocket(url, headers === undefined ? undefined : ({ headers } as any))
        socket.onopen = () => resume(Effect.succeed(socket))
        socket.onerror = () => resume(Effect.fail(new Error("the WebSocket did not open")))
      }),
      (socket) => Effect.sync(() => socket.close())
    )
    const answers: Array<any> = []
    const closed: { code?: number; reason?: string } = {}
    socket.onmessage = (event) => answers.push(JSON.parse(String(event.data)))
    socket.onclose = (event) => {
      closed.code = event.code
      closed.reason = event.reason
    }
    const received = (count: number) => Effect.as(eventually(Effect.sync(() => answers.length >= count)), answers)
    return {
      socket,
      answers,
      closed,
      send: (frame: unknown) => socket.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
      received,
      answerTo: (id: string | number) =>
        Effect.gen(function*() {
          yield* eventually(Effect.sync(() => answers.some((answer) => answer.id === id)))
          return answers.find((answer) => answer.id === id)
        })
    } satisfies Client
  })

/** The same submission as a POST: the HTTP API's status and problem body. */
const post = (path: string, body: string) =>
  Effect.gen(function*() {
    const at = yield* port
    return yield* Effect.promise(async () => {
      const reply = await fetch(`http://127.0.0.1:${at}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body
      })
      return { status: reply.status, body: await reply.json() as any }
    })
  })

const set = (entity: number, component = "c", data: Record<string, unknown> = { x: entity }) => ({
  type: "set",
  entity,
  component,
  data
})

// ---- the stream ----

describe("GET /ingest", () => {
  it.effect("accepts frames with their seqs, answers durable ones once committed, and replays a known key", () =>
    Effect.gen(function*() {
      const store = yield* MemorySink.MemorySink
      const client = yield* connect()
      client.send({ id: 1, sector: 3, ops: [set(1), set(2)] })
      assert.deepStrictEqual(yield* client.answerTo(1), { id: 1, sector: 3, accepted: 2, firstSeq: 1, lastSeq: 2 })
      client.send({ id: "d", sector: 3, ops: [{ type: "delete", entity: 1 }], ack: "durable" })
      assert.deepStrictEqual(yield* client.answerTo("d"), {
        id: "d",
        sector: 3,
        accepted: 1,
        firstSeq: 3,
        lastSeq: 3,
        persisted: true
      })
      assert.strictEqual(store.sector(3)?.persistedSeq, 3)

      // an idempotency key: the retry gets the original seqs and applies nothing; another body with it is a 422
      client.send({ id: "k1", sector: 3, ops: [set(5)], idempotencyKey: "key-1" })
      const first = yield* client.answerTo("k1")
      client.send({ id: "k2", sector: 3, ops: [set(5)], idempotencyKey: "key-1", ack: "durable" })
      assert.deepStrictEqual(yield* client.answerTo("k2"), {
        id: "k2",
        sector: 3,
        accepted: 1,
        firstSeq: first.firstSeq,
        lastSeq: first.lastSeq,
        persisted: true,
        replayed: true
      })
      client.send({ id: "k3", sector: 3, ops: [set(6)], idempotencyKey: "key-1" })
      const reused = yield* client.answerTo("k3")
      assert.strictEqual(reused.error.status, 422)
      assert.strictEqual(reused.error.type, "urn:sectors:problem:idempotency-key-reused")
      assert.strictEqual((yield* stats(3)).lastSeq, 4)
    }).pipe(Effect.scoped, Effect.provide(serve())))

  it.effect("answers frames whose ids are not ASCII intact, beside frames with numeric ids", () =>
    Effect.gen(function*() {
      // the sector awake (its first batch held in the sink) before the frames come, so that it takes them at once
      // (`Sectors.trySubmit`): their answers are written in the event that read them
      yield* holdSink("10 seconds")
      const client = yield* connect()
      client.send({ id: 0, sector: 5, ops: [set(1)] })
      yield* client.received(1)
      const ids = [1, "é", 2, "😀", 3, "ü€", 4]
      for (const id of ids) client.send({ id, sector: 5, ops: [set(1)] })
      const answers = (yield* client.received(ids.length + 1)).slice(1)
      assert.deepStrictEqual(answers.map((answer) => [answer.id, answer.firstSeq]), ids.map((id, i) => [id, i + 2]))
      // a refusal that is not ASCII either
      client.send({ id: "ß", sector: 5, ops: [{ type: "set", entity: 1, component: "ç", data: {} }] })
      const refused = yield* client.answerTo("ß")
      assert.strictEqual(refused.error.status, 400)
      assert.include(refused.error.detail, "component")
    }).pipe(Effect.scoped, Effect.provide(serve())))

  it.effect("answers accepted frames of one sector in the order they were sent, with seqs in that order, under a burst", () =>
    Effect.gen(function*() {
      const client = yield* connect()
      const sectors = [1, 2]
      // each submission takes less time to reach its sector than the one before it
      for (let i = 0; i < 80; i++) client.send({ id: i, sector: sectors[i % 2], ops: [set(i)] })
      yield* advanceUntil(Effect.sync(() => client.answers.length === 80), "1 millis")
      assert.deepStrictEqual(client.answers.filter((answer) => answer.error !== undefined), [])
      for (const sector of sectors) {
        const answers = client.answers.filter((answer) => answer.sector === sector)
        assert.deepStrictEqual(answers.map((answer) => answer.id), [...Array(40).keys()].map((k) => k * 2 + sector - 1))
        assert.deepStrictEqual(answers.map((answer) => answer.firstSeq), [...Array(40).keys()].map((k) => k + 1))
      }
    }).pipe(Effect.scoped, Effect.provide(serve({ routing: overtaking }))))

  it.effect("goes on with a sector's later frames once a durable one is accepted, and answers it when it is durable", () =>
    Effect.gen(function*() {
      const store = yield* MemorySink.MemorySink
      yield* holdSink(Duration.seconds(10)) // nothing becomes durable for 10 s
      const client = yield* connect()
      client.send({ id: "d", sector: 4, ops: [set(1)], ack: "durable" })
      client.send({ id: 1, sector: 4, ops: [set(2)] })
      client.send({ id: 2, sector: 4, ops: [set(3)] })
      // the accepted frames are answered while the durable one waits, with the seqs after its own
      assert.deepStrictEqual(
        (yield* client.received(2)).map((answer) => [answer.id, answer.firstSeq]),
        [[1, 2], [2, 3]]
      )
      assert.strictEqual(store.sector(4)?.persistedSeq ?? 0, 0)
      yield* advanceUntil(Effect.sync(() => client.answers.length === 3), "100 millis")
      assert.deepStrictEqual(client.answers[2], { id: "d", sector: 4, accepted: 1, firstSeq: 1, lastSeq: 1, persisted: true })
    }).pipe(Effect.scoped, Effect.provide(serve())))

  it.effect("answers every kind of invalid frame with the HTTP API's problem for it, and keeps the connection open", () =>
    Effect.gen(function*() {
      const client = yield* connect()
      const big = "x".repeat(300)
      const cases: ReadonlyArray<{ frame: string; path: string; body: string; id: string | number | null }> = [
        { frame: "not json", path: "/sectors/1/ops", body: "not json", id: null },
        { frame: "", path: "/sectors/1/ops", body: "", id: null },
        {
          frame: JSON.stringify({ id: 1, sector: "abc", ops: [set(1)] }),
          path: "/sectors/abc/ops",
          body: JSON.stringify({ ops: [set(1)] }),
          id: 1
        },
        {
          frame: JSON.stringify({ id: 2, sector: 1, ops: [{ type: "set", entity: -1 }, { type: "nope" }] }),
          path: "/sectors/1/ops",
          body: JSON.stringify({ ops: [{ type: "set", entity: -1 }, { type: "nope" }] }),
          id: 2
        },
        {
          frame: JSON.stringify({ id: 3, sector: 1, ops: [...Array(11).keys()].map((i) => set(i)) }),
          path: "/sectors/1/ops",
          body: JSON.stringify({ ops: [...Array(11).keys()].map((i) => set(i)) }),
          id: 3
        },
        {
          frame: JSON.stringify({ id: 4, sector: 1, ops: [set(1)], ack: "eventually" }),
          path: "/sectors/1/ops?ack=eventually",
          body: JSON.stringify({ ops: [set(1)] }),
          id: 4
        },
        {
          frame: JSON.stringify({ id: 5, sector: 1, ops: [set(1, "c", { big })] }),
          path: "/sectors/1/ops",
          body: JSON.stringify({ ops: [set(1, "c", { big })] }),
          id: 5
        },
        {
          frame: JSON.stringify({ id: 6, sector: 1, ops: [] }),
          path: "/sectors/1/ops",
          body: JSON.stringify({ ops: [] }),
          id: 6
        },
        {
          frame: JSON.stringify({ id: 7, sector: 1, ops: [set(1)], idempotencyKey: "with space" }),
          path: "/sectors/1/ops",
          body: JSON.stringify({ ops: [set(1)] }),
          id: 7
        }
      ]
      for (const [index, { body, frame, id, path }] of cases.entries()) {
        client.send(frame)
        const [answer] = (yield* client.received(index + 1)).slice(index)
        assert.strictEqual(answer.id, id)
        const { type, title, status, detail, errors } = answer.error
        if (index === cases.length - 1) {
          // the header's name is the frame's field name
          assert.deepStrictEqual([status, errors], [400, [{ field: "idempotencyKey", message: errors[0].message }]])
          continue
        }
        const expected = yield* post(path, body)
        assert.deepStrictEqual({ type, title, status, detail, errors }, {
          type: expected.body.type,
          title: expected.body.title,
          status: expected.status,
          detail: expected.body.detail,
          errors: expected.body.errors
        }, frame)
      }
      // what only a frame can get wrong: no id (answered with id null), a field no frame has
      client.send({ sector: 1, ops: [set(1)] })
      client.send({ id: 8, sector: 1, ops: [set(1)], extra: true })
      const [noId, extra] = (yield* client.received(cases.length + 2)).slice(cases.length)
      assert.deepStrictEqual([noId.id, noId.error.status, noId.error.errors.map((e: any) => e.field)], [null, 400, ["id"]])
      assert.deepStrictEqual([extra.id, extra.error.status, extra.error.errors.map((e: any) => e.field)], [8, 400, [
        "extra"
      ]])
      // nothing was applied, and the connection still serves
      assert.strictEqual((yield* stats(1)).lastSeq, 0)
      client.send({ id: "ok", sector: 1, ops: [set(1)] })
      assert.strictEqual((yield* client.answerTo("ok")).lastSeq, 1)
      assert.isUndefined(client.closed.code)
    }).pipe(Effect.scoped, Effect.provide(serve())))

  it.effect("answers GET /ingest without an upgrade with 426", () =>
    Effect.gen(function*() {
      const at = yield* port
      const reply = yield* Effect.promise(async () => {
        const response = await fetch(`http://127.0.0.1:${at}/ingest`)
        return { status: response.status, body: await response.json() as any }
      })
      assert.deepStrictEqual([reply.status, reply.body.type], [426, "urn:sectors:problem:upgrade-required"])
    }).pipe(Effect.scoped, Effect.provide(serve())))
})

/** The way to the sectors with a bug: taking a frame at once throws. */
const failing: Layer.Layer<Sectors.Sectors, never, SectorHost.SectorHost> = Layer.effect(Sectors.Sectors)(
  Effect.gen(function*() {
    const inner = yield* Sectors.Sectors
    return Sectors.Sectors.of({
      ...inner,
      trySubmit: () => {
        throw new Error("a bug in the host")
      }
    })
  })
).pipe(Layer.provide(Sectors.layerLocal))

describe("/ingest protocol violations", () => {
  it.effect("closes the connection with 1011 when the host itself fails, and goes on serving other connections", () =>
    Effect.gen(function*() {
      const client = yield* connect()
      client.send({ id: 1, sector: 1, ops: [set(1, "c", { x: 1 })] })
      yield* eventually(Effect.sync(() => client.closed.code !== undefined))
      assert.strictEqual(client.closed.code, 1011)
      assert.include(client.closed.reason, "failed unexpectedly")
      // the host is still up: a new connection is served (its frame refused by the same bug, the same way)
      const next = yield* connect()
      next.send({ id: 2, sector: 1, ops: [set(1, "c", { x: 2 })] })
      yield* eventually(Effect.sync(() => next.closed.code !== undefined))
      assert.strictEqual(next.closed.code, 1011)
    }).pipe(Effect.scoped, Effect.provide(serve({ routing: failing }))))


  it.effect("closes the connection with 1003 on a binary frame", () =>
    Effect.gen(function*() {
      const client = yield* connect()
      client.socket.send(new Uint8Array([1, 2, 3]))
      yield* eventually(Effect.sync(() => client.closed.code !== undefined))
      assert.strictEqual(client.closed.code, 1003)
      assert.include(client.closed.reason, "binary")
    }).pipe(Effect.scoped, Effect.provide(serve())))

  it.effect("closes the connection with 1009 on a frame over MAX_BODY_BYTES", () =>
    Effect.gen(function*() {
      const client = yield* connect()
      client.send({ id: 1, sector: 1, ops: [set(1, "c", { text: "y".repeat(limits.maxBodyBytes) })] })
      yield* eventually(Effect.sync(() => client.closed.code !== undefined))
      assert.strictEqual(client.closed.code, 1009)
      assert.deepStrictEqual(client.answers, [])
    }).pipe(Effect.scoped, Effect.provide(serve())))
})

describe("/ingest authentication (AUTH_TOKEN)", () => {
  const upgrade = (headers: Record<string, string>) =>
    Effect.gen(function*() {
      const at = yield* port
      return yield* Effect.callback<{ status: number; body: any }>((resume) => {
        const request = http.request({
          host: "127.0.0.1",
          port: at,
          path: "/ingest",
          headers: {
            connection: "Upgrade",
            upgrade: "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            ...headers
          }
        })
        request.on("upgrade", (_response, socket) => {
          socket.destroy()
          resume(Effect.succeed({ status: 101, body: undefined }))
        })
        request.on("response", (response) => {
          let text = ""
          response.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")))
          response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, body: JSON.parse(text) })))
        })
        request.end()
      })
    })

  it.effect("refuses the upgrade with 401 without a token, and serves it with one", () =>
    Effect.gen(function*() {
      const refused = yield* upgrade({})
      assert.deepStrictEqual([refused.status, refused.body.type], [401, "urn:sectors:problem:unauthorized"])
      assert.strictEqual((yield* upgrade({ authorization: "Bearer wrong" })).status, 401)
      assert.strictEqual((yield* upgrade({ authorization: "Bearer s3cret" })).status, 101)
      const client = yield* connect({ authorization: "Bearer s3cret" })
      client.send({ id: 1, sector: 1, ops: [set(1)] })
      assert.strictEqual((yield* client.answerTo(1)).lastSeq, 1)
    }).pipe(Effect.scoped, Effect.provide(serve({ host: { authToken: [Redacted.make("s3cret")] } }))))
})

describe("/ingest backpressure (MAX_INFLIGHT_FRAMES)", () => {
  it.effect("stops reading a connection at MAX_INFLIGHT_FRAMES unanswered frames, and resumes as answers go out", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      const client = yield* connect()
      const sectors = [...Array(12).keys()].map((i) => i + 1)
      // every sector active, then the sink held: each durable frame waits, each for its own sector
      for (const sector of sectors) client.send({ id: `warm${sector}`, sector, ops: [set(0)] })
      yield* client.received(12)
      yield* holdSink("1 hour")
      for (const sector of sectors) client.send({ id: sector, sector, ops: [set(1)], ack: "durable" })
      client.send("not json")
      const submitted = Effect.map(
        Effect.forEach(sectors, (sector) => stats(sector)),
        (all) => all.filter((s) => s.lastSeq === 2).length
      )
      yield* eventually(Effect.map(submitted, (count) => count === 4))
      yield* settle
      // only the bound reached the sectors, and the frame after them was not even read: its answer would be at once
      assert.strictEqual(yield* submitted, 4)
      assert.strictEqual(client.answers.length, 12)
      assert.strictEqual((yield* Metric.value(Ingest.unansweredFrames)).value, 4)

      yield* faults.reset
      yield* advanceUntil(Effect.sync(() => client.answers.length === 25), "1 second")
      assert.strictEqual(yield* submitted, 12)
      // the frame after the bound was read only once places were free: after the first durable answer
      assert.isAbove(client.answers.findIndex((answer) => answer.id === null), 12)
      assert.strictEqual((yield* Metric.value(Ingest.unansweredFrames)).value, 0)
    }).pipe(Effect.scoped, Effect.provide(serve({ host: { maxInflightFrames: 4 } }))))

  it.effect("releases a connection's frames and durable waits when its client closes it mid-stream", () =>
    Effect.gen(function*() {
      const faults = yield* FaultSink.Faults
      const client = yield* connect()
      for (const sector of [1, 2, 3]) client.send({ id: `warm${sector}`, sector, ops: [set(0)] })
      yield* client.received(3)
      yield* holdSink("10 seconds")
      client.send({ id: 1, sector: 1, ops: [set(1)], ack: "durable" })
      client.send({ id: 2, sector: 2, ops: [set(1)], ack: "durable" })
      yield* eventually(Effect.map(Effect.all([stats(1), stats(2)]), ([a, b]) => a.lastSeq === 2 && b.lastSeq === 2))
      // both places taken: one more durable frame is refused at once
      client.send({ id: 3, sector: 3, ops: [set(1)], ack: "durable" })
      assert.strictEqual((yield* client.answerTo(3)).error.type, "urn:sectors:problem:too-many-waiters")
      assert.strictEqual((yield* Metric.value(Ingest.connections)).value, 1)

      client.socket.close()
      yield* eventually(Effect.map(Metric.value(Ingest.connections), (gauge) => gauge.value === 0))
      assert.strictEqual((yield* Metric.value(Ingest.unansweredFrames)).value, 0)
      // the places are free again: a new durable frame is submitted (and waits), not refused
      const next = yield* connect()
      next.send({ id: 4, sector: 3, ops: [set(1)], ack: "durable" })
      yield* eventually(Effect.map(stats(3), (s) => s.lastSeq === 2))
      yield* faults.reset
      yield* advanceUntil(Effect.sync(() => next.answers.length === 1), "1 second")
      assert.deepStrictEqual(yield* next.answerTo(4), {
        id: 4,
        sector: 3,
        accepted: 1,
        firstSeq: 2,
        lastSeq: 2,
        persisted: true
      })
    }).pipe(Effect.scoped, Effect.provide(serve({ host: { maxDurableWaiters: 2 } }))))
})

describe("/ingest durable frames", () => {
  it.effect("answers a durable frame not durable within DURABLE_TIMEOUT with 504 and its seqs, and frees its place", () =>
    Effect.gen(function*() {
      const client = yield* connect()
      client.send({ id: "warm", sector: 1, ops: [set(0)] })
      yield* client.answerTo("warm")
      yield* holdSink("10 seconds")
      client.send({ id: "slow", sector: 1, ops: [set(1)], ack: "durable" })
      client.send({ id: "after", sector: 1, ops: [set(2)] })
      // accepted at once (the frame after it has the next seq), and it holds the one place
      assert.strictEqual((yield* client.answerTo("after")).firstSeq, 3)
      client.send({ id: "refused", sector: 2, ops: [set(1)], ack: "durable" })
      assert.strictEqual((yield* client.answerTo("refused")).error.type, "urn:sectors:problem:too-many-waiters")
      assert.strictEqual((yield* stats(2)).lastSeq, 0)

      yield* advanceUntil(Effect.sync(() => client.answers.some((answer) => answer.id === "slow")), "100 millis")
      const slow = (yield* client.answerTo("slow")).error
      assert.deepStrictEqual(
        [slow.status, slow.type, slow.sector, slow.firstSeq, slow.lastSeq, slow.persistedSeq],
        [504, "urn:sectors:problem:timeout", 1, 2, 2, 1]
      )
      // its place is free again: the next durable frame is taken and waits
      client.send({ id: "next", sector: 1, ops: [set(3)], ack: "durable" })
      yield* eventually(Effect.map(stats(1), (s) => s.lastSeq === 4))
      assert.isUndefined(client.answers.find((answer) => answer.id === "next"))
    }).pipe(Effect.scoped, Effect.provide(serve({ host: { durableTimeout: Duration.seconds(1), maxDurableWaiters: 1 } }))))
})

describe("/ingest connections (MAX_CONNECTIONS)", () => {
  it.effect("counts a WebSocket connection against MAX_CONNECTIONS for as long as it is open", () =>
    Effect.gen(function*() {
      const at = yield* port
      const first = yield* connect()
      const refused = yield* Effect.callback<number>((resume) => {
        const socket = new WebSocket(`ws://127.0.0.1:${at}/ingest`)
        socket.onopen = () => {
          socket.close()
          resume(Effect.succeed(-1))
        }
        socket.onclose = (event) => resume(Effect.succeed(event.code))
      })
      assert.strictEqual(refused, 1006)
      first.socket.close()
      yield* eventually(Effect.map(Metric.value(Ingest.connections), (gauge) => gauge.value === 0))
      const second = yield* connect()
      second.send({ id: 1, sector: 1, ops: [set(1)] })
      assert.strictEqual((yield* second.answerTo(1)).lastSeq, 1)
    }).pipe(Effect.scoped, Effect.provide(serve({ host: { maxConnections: 1 } }))))
})

describe("/ingest during shutdown", () => {
  it.effect("answers new frames with ShuttingDown, answers the durable ones in flight, then closes with 1001", () =>
    Effect.gen(function*() {
      const lifecycle = yield* Lifecycle.Lifecycle
      const client = yield* connect()
      client.send({ id: "warm", sector: 1, ops: [set(0)] })
      yield* client.answerTo("warm")
      yield* holdSink("10 seconds")
      client.send({ id: "held", sector: 1, ops: [set(1)], ack: "durable" })
      yield* eventually(Effect.map(stats(1), (s) => s.lastSeq === 2))

      yield* lifecycle.requestShutdown
      client.send({ id: "late", sector: 2, ops: [set(1)] })
      const late = yield* client.answerTo("late")
      assert.deepStrictEqual([late.error.status, late.error.type], [503, "urn:sectors:problem:shutting-down"])
      assert.strictEqual((yield* stats(2)).lastSeq, 0)
      assert.isUndefined(client.closed.code)

      yield* advanceUntil(Effect.sync(() => client.closed.code !== undefined), "1 second")
      assert.strictEqual((yield* client.answerTo("held")).persisted, true)
      assert.strictEqual(client.closed.code, 1001)
    }).pipe(Effect.scoped, Effect.provide(serve())))
})

describe("/ingest under load", () => {
  it.effect("answers every one of many single-op frames from a few connections", () =>
    Effect.gen(function*() {
      const clients = yield* Effect.all([connect(), connect(), connect(), connect()])
      for (const [c, client] of clients.entries()) {
        for (let i = 0; i < 500; i++) client.send({ id: i, sector: (c * 500 + i) % 8, ops: [set(i)] })
      }
      for (const client of clients) {
        const answers = yield* client.received(500)
        assert.strictEqual(answers.filter((answer) => answer.error !== undefined).length, 0)
        assert.deepStrictEqual(answers.map((answer) => answer.id).sort((a, b) => a - b), [...Array(500).keys()])
      }
      const total = yield* Effect.forEach([...Array(8).keys()], (sector) => stats(sector))
      assert.strictEqual(total.reduce((sum, s) => sum + s.lastSeq, 0), 2000)
    }).pipe(Effect.scoped, Effect.provide(serve())))
})

