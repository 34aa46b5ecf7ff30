/**
 * The service's OpenTelemetry SDK, bridged to Effect by `@effect/opentelemetry`'s `NodeSdk.layer`: the service's
 * own spans (`Fleet.move`, `Fleet.locate`) and the runtime's (`SectorHost.submit`, `Sector.persist`,
 * `SinkPg.commit` and its SQL statements) go to the SDK's span processor — a request's trace holds its `Fleet.move`
 * and the `SectorHost.submit` under it; batches and transactions, the runtime's own work, are traces of their own,
 * a transaction linked to the batches it commits —
 * and the runtime's metrics to its metric reader.
 *
 * **Gotcha**: provide it under everything that starts fibers of its own — `Service.layer` and the sink — not only
 * around a program: a sector's flusher and the sink's writers trace with the tracer they were built with.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type * as Resource from "@effect/opentelemetry/Resource"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { type MetricReader, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Effect, Layer, Option } from "effect"

/** The SDK with the span processor (and metric reader) a service already has. */
export const layer = (options: {
  readonly spanProcessor: SpanProcessor
  readonly metricReader?: MetricReader | undefined
}): Layer.Layer<Resource.Resource> =>
  NodeSdk.layer(() => ({ resource: { serviceName: "embedded-service" }, ...options }))

/**
 * OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://localhost:4318`): spans in batches, metrics every
 * 10 seconds. Without the variable, nothing is traced or exported.
 */
export const layerFromEnv: Layer.Layer<never, Config.ConfigError> = Layer.unwrap(Effect.gen(function*() {
  const endpoint = yield* Config.option(Config.String("OTEL_EXPORTER_OTLP_ENDPOINT"))
  if (Option.isNone(endpoint)) return Layer.empty
  return layer({
    spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint.value}/v1/traces` })),
    metricReader: new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter({ url: `${endpoint.value}/v1/metrics` }),
      exportIntervalMillis: 10_000
    })
  })
}))
