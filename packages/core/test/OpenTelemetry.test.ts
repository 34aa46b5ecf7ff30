/**
 * What an embedder running the OpenTelemetry SDK gets, through `@effect/opentelemetry`'s `NodeSdk.layer` provided
 * under the host (as core's README shows): a `SectorHost.submit` span per submission and a `Sector.persist` span
 * per batch, with the sector, the ops, the collapse and the outcome as attributes, and the runtime's metrics in the
 * SDK's metric readers. Read from an in-memory span exporter and a metric reader collected by hand.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, describe, it } from "@effect/vitest"
import { MetricReader } from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Duration, Effect, Layer } from "effect"
import { BatchPolicy, SectorHost, SectorsConfig, SectorSink } from "../src/index.ts"
import { set } from "./support.ts"

/** A metric reader that exports only when the test collects. */
class CollectedReader extends MetricReader {
  protected override onShutdown = () => Promise.resolve()
  protected override onForceFlush = () => Promise.resolve()
}

const otel = (exporter: InMemorySpanExporter, reader: MetricReader) =>
  NodeSdk.layer(() => ({
    resource: { serviceName: "sectors-test" },
    spanProcessor: new SimpleSpanProcessor(exporter),
    metricReader: reader
  }))

/** A host on the memory sink with the SDK under it, so that its own fibers (the flushers) trace too. */
const hostWith = (exporter: InMemorySpanExporter, reader: MetricReader) =>
  SectorHost.layer.pipe(
    Layer.provide(SectorSink.layerMemory),
    // a maxWait no test run reaches: the batch goes out by the test's flush (trigger "manual"), not by the clock
    Layer.provide(SectorsConfig.layer({
      policy: BatchPolicy.BatchPolicy.make({ ...BatchPolicy.profiles.balanced, maxWait: Duration.minutes(10) })
    })),
    Layer.provideMerge(otel(exporter, reader))
  )

const named = (spans: ReadonlyArray<ReadableSpan>, name: string) => spans.filter((span) => span.name === name)

describe("OpenTelemetry through NodeSdk.layer", () => {
  it.live("exports a span per submission and per batch, with sector, ops, collapse and outcome", () => {
    const exporter = new InMemorySpanExporter()
    const reader = new CollectedReader()
    return Effect.gen(function*() {
      const host = yield* SectorHost.SectorHost
      // the embedder's own request span: a submission inside it is traced
      const request = Effect.withSpan("embedder.request")
      // three writes, two keys: one batch of 3 ops collapsed to 2 rows
      yield* request(host.submit(7, [set(1, "c", 1), set(1, "c", 2), set(2)]))
      yield* host.flush(7)
      const refused = yield* Effect.flip(request(host.submit(7, [])))
      // a caller outside any span gets no submission span (it would cost ~6 µs a submission for nobody)
      yield* host.submit(8, [set(3)])

      const spans = exporter.getFinishedSpans()
      const submits = named(spans, "SectorHost.submit")
      assert.strictEqual(submits.length, 2)
      assert.deepStrictEqual(submits.map((span) => span.attributes["sector.id"]), [7, 7])
      assert.deepInclude(submits[0]!.attributes, {
        "sector.id": 7,
        "submit.ops": 3,
        "submit.ack": "accepted",
        outcome: "success"
      })
      assert.deepInclude(submits[1]!.attributes, { "sector.id": 7, "submit.ops": 0, outcome: refused._tag })

      const persists = named(spans, "Sector.persist")
      assert.strictEqual(persists.length, 1)
      assert.deepInclude(persists[0]!.attributes, {
        "sector.id": 7,
        "batch.ops": 3,
        "batch.rows": 2,
        "batch.trigger": "manual",
        "batch.collapse_ratio": 2 / 3,
        outcome: "success"
      })

      const { resourceMetrics } = yield* Effect.promise(() => reader.collect())
      const metrics = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics)
      const received = metrics.find((metric) => metric.descriptor.name === "sectors_ops_received_total")
      assert.isDefined(received, "the runtime's metrics reach the SDK's reader")
      assert.isAtLeast(received!.dataPoints.reduce((sum, point) => sum + Number(point.value), 0), 3)
    }).pipe(Effect.provide(hostWith(exporter, reader)))
  })
})
