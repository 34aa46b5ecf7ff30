/**
 * OTLP export of traces and metrics, configured with the standard OpenTelemetry variables: nothing is exported
 * unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or a per-signal endpoint) is set. When it is, traces and metrics go out over
 * OTLP/HTTP (protobuf) unless `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` say otherwise — effect's
 * `layerFromConfig` would export nothing without those, unlike the OpenTelemetry specification — and logs only if
 * `OTEL_LOGS_EXPORTER=otlp`. The service name defaults to `sector-host` (`OTEL_SERVICE_NAME`). An unreachable
 * collector does not stop the host: the exporter logs at Debug and backs off.
 */
import { Config, ConfigProvider, Effect, Layer, Option } from "effect"
import { FetchHttpClient } from "effect/http"
import { Otlp, OtlpExporter, OtlpSerialization } from "effect/observability"

/** The first endpoint configured: the shared one or a per-signal one. */
const endpoint = Config.all([
  Config.option(Config.String("OTEL_EXPORTER_OTLP_ENDPOINT")),
  Config.option(Config.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  Config.option(Config.String("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
]).pipe(Config.map((endpoints) => Option.firstSomeOf(endpoints)))

/**
 * The OTLP exporters (tracer, metrics reader, and logger if asked for) when an endpoint is configured; otherwise
 * only the exporter's no-op flusher.
 */
export const layer: Layer.Layer<OtlpExporter.Flusher, Config.ConfigError> = Layer.unwrap(Effect.gen(function*() {
  const configured = yield* endpoint
  if (Option.isNone(configured)) return OtlpExporter.layerFlusher
  const current = yield* ConfigProvider.ConfigProvider
  // the specification's defaults, behind whatever the environment says
  const withDefaults = ConfigProvider.orElse(
    current,
    ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: "otlp", OTEL_METRICS_EXPORTER: "otlp", OTEL_LOGS_EXPORTER: "none" })
  )
  return Otlp.layerFromConfig({ resource: { serviceName: "sector-host" } }).pipe(
    Layer.provide([OtlpSerialization.layerProtobuf, FetchHttpClient.layer]),
    Layer.provide(ConfigProvider.layer(withDefaults))
  )
}))
