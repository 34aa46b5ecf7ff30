/**
 * The in-process sink with its store open for inspection: tests assert on durable rows, watermarks, commits,
 * replays, dead letters and entries applied twice. `layer` provides both the `SectorSink` and this `MemorySink`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SectorSink from "../SectorSink.ts"

/** The inspectable store of the memory sink in scope. */
export class MemorySink extends Context.Service<MemorySink, SectorSink.MemoryStore>()("@sectors/core/testing/MemorySink") {}

/** A fresh memory sink and its store. */
export const layer: Layer.Layer<SectorSink.SectorSink | MemorySink> = Layer.effectContext(
  Effect.map(SectorSink.makeMemory, ({ sink, store }) =>
    Context.make(SectorSink.SectorSink, sink).pipe(Context.add(MemorySink, store)))
)
