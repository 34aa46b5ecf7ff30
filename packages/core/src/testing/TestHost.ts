/**
 * A `SectorHost` for tests: the host on a fresh memory sink wrapped in `FaultSink`, with retries and circuit timings
 * short enough to run through an outage in a few seconds of `TestClock` time, and no passivation. It provides the
 * host together with what a test steers or inspects: `FaultSink.Faults`, `MemorySink.MemorySink`, the `SectorSink`,
 * `Resilience` and `SectorsConfig`. Time is whatever `Clock` is current (the `TestClock` inside `it.effect`).
 */
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import type * as Resilience from "../Resilience.ts"
import * as SectorHost from "../SectorHost.ts"
import type { SectorSink } from "../SectorSink.ts"
import * as SectorsConfig from "../SectorsConfig.ts"
import * as FaultSink from "./FaultSink.ts"
import * as MemorySink from "./MemorySink.ts"

/** What `layer` overrides of `SectorsConfig.defaults`: fast retries, a circuit that opens after 2 failed persists. */
export const config: Partial<SectorsConfig.SectorsConfig["Service"]> = {
  passivateAfter: Duration.infinity,
  retryBase: Duration.millis(10),
  retryMaxDelay: Duration.millis(100),
  retryDeadline: Duration.millis(300),
  circuitFailures: 2,
  circuitOpenBase: Duration.seconds(1),
  circuitOpenMax: Duration.seconds(4)
}

/**
 * A host on a fresh memory sink with fault injection, configured by `config` overlaid with `options`.
 *
 * **Gotchas** `MemorySink.layer` appears twice below but is built once per layer build (layers are memoized by
 * reference), so the store a test inspects is the one behind the faults.
 */
export const layer = (
  options: Partial<SectorsConfig.SectorsConfig["Service"]> = {}
): Layer.Layer<
  | SectorHost.SectorHost
  | Resilience.Resilience
  | SectorSink
  | FaultSink.Faults
  | MemorySink.MemorySink
  | SectorsConfig.SectorsConfig
> =>
  SectorHost.layer.pipe(
    Layer.provideMerge(FaultSink.layer(MemorySink.layer)),
    Layer.provideMerge(MemorySink.layer),
    Layer.provideMerge(SectorsConfig.layer({ ...config, ...options }))
  )
