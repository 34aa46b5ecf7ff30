/**
 * A sink wrapper that records every batch persisted — sector, ops, rows, trigger, start and end — so a
 * run's batch sizes, triggers and collapse are exact figures, not histogram estimates.
 */
import { type Batch, SectorSink } from "@sectors/core"
import { Context, Effect, Layer } from "effect"

/** One committed batch. */
export interface Record {
  readonly sectorId: number
  readonly ops: number
  readonly rows: number
  readonly trigger: Batch.Batch["trigger"]
  /** performance.now() at the call and at its end. */
  readonly startedAt: number
  readonly endedAt: number
}

/** The batches recorded so far. */
export class Recorder extends Context.Service<Recorder, { readonly records: () => ReadonlyArray<Record>; readonly reset: () => void }>()(
  "bench/Recorder"
) {}

/** Wraps the sink `inner` builds; provides the recording sink and the `Recorder`. */
export const layer = <E, R>(inner: Layer.Layer<SectorSink.SectorSink, E, R>) =>
  Layer.effectContext(Effect.gen(function*() {
    const sink = yield* SectorSink.SectorSink
    let records: Array<Record> = []
    const recording = SectorSink.SectorSink.of({
      ...sink,
      persist: (batch) =>
        Effect.suspend(() => {
          const startedAt = performance.now()
          return Effect.tap(sink.persist(batch), () =>
            Effect.sync(() =>
              void records.push({
                sectorId: batch.sectorId,
                ops: batch.ops,
                rows: batch.entries.length,
                trigger: batch.trigger,
                startedAt,
                endedAt: performance.now()
              })
            ))
        })
    })
    return Context.make(SectorSink.SectorSink, recording).pipe(
      Context.add(Recorder, { records: () => records, reset: () => void (records = []) })
    )
  })).pipe(Layer.provide(inner))
