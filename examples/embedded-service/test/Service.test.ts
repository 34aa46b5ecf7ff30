/**
 * The service over real HTTP, once on the memory sink and once on PostgreSQL (a fresh database on the run's
 * embedded server): a move is answered with its seq, is readable at once, is in the sink once the durable answer
 * comes. Traced: a request's trace holds its `Fleet.move` and, under it, `SectorHost.submit`; a batch is a
 * `Sector.persist` of its own (it is the flusher's work, not a request's), a PostgreSQL transaction a `SinkPg.commit`
 * linked to the batches it commits.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { SectorsConfig, SectorSink, SectorState } from "@sectors/core"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { SinkPg } from "@sectors/sink-pg"
import { Effect, Layer } from "effect"
import { HttpServer } from "effect/http"
import { createServer } from "node:http"
import * as Service from "../src/Service.ts"
import * as Telemetry from "../src/Telemetry.ts"

const sinks = {
  memory: SectorSink.layerMemory,
  PostgreSQL: Layer.unwrap(Effect.map(TestDatabase.fresh(TestDatabase.serverUrl()), (url) => SinkPg.layer(url)))
}

/** The service on `sink`, listening on a free port, traced into `exporter`; the sink stays in context. */
const serviceOn = (sink: (typeof sinks)[keyof typeof sinks], exporter: InMemorySpanExporter) =>
  Service.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: 0 }), sink)),
    Layer.provide(SectorsConfig.layer()),
    Layer.provide(Telemetry.layer({ spanProcessor: new SimpleSpanProcessor(exporter) }))
  )

const request = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, body: await response.json() as unknown }
  })

const put = (url: string, body: unknown) =>
  request(url, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

const names = (spans: ReadonlyArray<ReadableSpan>) => new Set(spans.map((span) => span.name))

for (const [name, sink] of Object.entries(sinks)) {
  describe(`the service on the ${name} sink`, () => {
    it.live("moves a ship, reads it back at once, and stores it once the durable answer comes", () => {
      const exporter = new InMemorySpanExporter()
      return Effect.gen(function*() {
        const base = yield* HttpServer.addressFormattedWith(Effect.succeed)
        const ship = `${base}/sectors/3/ships/17`

        assert.deepStrictEqual(yield* put(`${ship}/position`, { x: 1, y: 2 }), { status: 200, body: { seq: 1 } })
        assert.deepStrictEqual(yield* request(ship), { status: 200, body: { x: 1, y: 2 } })
        assert.deepStrictEqual(yield* put(`${ship}/position?durable=true`, { x: 5, y: 8 }), {
          status: 200,
          body: { seq: 2 }
        })

        const stored = yield* (yield* SectorSink.SectorSink).load(3)
        assert.strictEqual(stored.persistedSeq, 2)
        assert.deepStrictEqual(SectorState.view(SectorState.fromRows(stored.rows), 17)?.components, {
          position: { x: 5, y: 8 }
        })

        const spans = exporter.getFinishedSpans()
        for (const expected of ["Fleet.move", "SectorHost.submit", "Sector.persist"]) {
          assert.isTrue(names(spans).has(expected), `a ${expected} span`)
        }
        const move = spans.find((span) => span.name === "Fleet.move")!
        const submit = spans.find((span) => span.name === "SectorHost.submit")!
        assert.strictEqual(submit.parentSpanContext?.spanId, move.spanContext().spanId, "submit under the move")
        if (name === "PostgreSQL") {
          const commit = spans.find((span) => span.name === "SinkPg.commit")
          assert.isDefined(commit, "a SinkPg.commit span")
          assert.deepInclude(commit!.attributes, { "sector.ids": [3], outcome: "success" })
          const persisted = new Set(spans.filter((span) => span.name === "Sector.persist").map((span) => span.spanContext().spanId))
          assert.isTrue(commit!.links.some((link) => persisted.has(link.context.spanId)), "the commit links to its batch")
        }
      }).pipe(Effect.provide(serviceOn(sink, exporter)))
    })

    it.live("answers 400 to a malformed id or position and 404 to a ship never moved", () =>
      Effect.gen(function*() {
        const base = yield* HttpServer.addressFormattedWith(Effect.succeed)
        assert.strictEqual((yield* put(`${base}/sectors/3/ships/x/position`, { x: 1, y: 2 })).status, 400)
        assert.strictEqual((yield* put(`${base}/sectors/3/ships/1/position`, { x: "far" })).status, 400)
        assert.strictEqual((yield* request(`${base}/sectors/3/ships/99`)).status, 404)
      }).pipe(Effect.provide(serviceOn(sink, new InMemorySpanExporter()))))
  })
}
