/**
 * Fault injection around any sink, for tests of the runtime's resilience (and of your own configuration):
 * - `failNext(n, reason)` — the next n persists fail (`ambiguous: true`: they commit, then report a transient error,
 *   as a connection lost after COMMIT does);
 * - `outage(duration)` — every call fails as `Transient` until the clock has moved on that long;
 * - `slow(duration)` — every persist takes that much longer (on the `Clock`, so `TestClock` controls it);
 * - `poison(predicate)` — persists and trial runs of batches holding a matching entry are `Rejected`;
 * - `dieNext(n)` — the next n persists die with a defect.
 * `layer(inner)` wraps the sink built by `inner` and provides `Faults` to steer it.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Batch, Entry } from "../Batch.ts"
import { SinkError, type SinkErrorReason } from "../Errors.ts"
import { SectorSink } from "../SectorSink.ts"

/** Counts of what the fault sink did. */
export interface FaultStats {
  readonly persists: number
  readonly verifies: number
  readonly loads: number
  /** Reads without a claim (`read`). */
  readonly reads: number
  readonly injected: number
}

export class Faults extends Context.Service<Faults, {
  /** The next `n` persists fail with `reason`; `ambiguous` ones commit first. */
  readonly failNext: (
    n: number,
    options?: { readonly reason?: SinkErrorReason | undefined; readonly ambiguous?: boolean | undefined }
  ) => Effect.Effect<void>
  /** Every call fails as `Transient` for `duration` from now. */
  readonly outage: (duration: Duration.Input) => Effect.Effect<void>
  /** Every persist takes `duration` longer (zero to stop). */
  readonly slow: (duration: Duration.Input) => Effect.Effect<void>
  /** Batches holding an entry matching `predicate` are rejected (their data is at fault). */
  readonly poison: (predicate: (entry: Entry) => boolean) => Effect.Effect<void>
  /** The next `n` persists die with a defect. */
  readonly dieNext: (n: number) => Effect.Effect<void>
  /** Stops every fault. */
  readonly reset: Effect.Effect<void>
  readonly stats: Effect.Effect<FaultStats>
}>()("@sectors/core/testing/Faults") {}

/** Wraps the sink `inner` builds with fault injection. */
export const layer = <E, R>(inner: Layer.Layer<SectorSink, E, R>): Layer.Layer<SectorSink | Faults, E, R> =>
  Layer.effectContext(Effect.gen(function*() {
    const sink = yield* SectorSink
    const clock = yield* Clock.Clock
    let failures: Array<{ reason: SinkErrorReason; ambiguous: boolean }> = []
    let outageUntil = 0
    let delay = Duration.zero
    let poisoned: ((entry: Entry) => boolean) | undefined
    let deaths = 0
    const stats = { persists: 0, verifies: 0, loads: 0, reads: 0, injected: 0 }

    const inOutage = () => clock.currentTimeMillisUnsafe() < outageUntil
    const transient = (what: string) => {
      stats.injected++
      return new SinkError({ reason: "Transient", message: `injected outage (${what})` })
    }
    const rejects = (batch: Batch) => poisoned !== undefined && batch.entries.some(poisoned)
    const rejection = () => {
      stats.injected++
      return new SinkError({ reason: "Rejected", message: "injected: entry rejected", code: "22P05" })
    }

    const faulty = SectorSink.of({
      load: (sectorId) =>
        Effect.suspend(() => {
          stats.loads++
          return inOutage() ? Effect.fail(transient("load")) : sink.load(sectorId)
        }),
      read: (sectorId) =>
        Effect.suspend(() => {
          stats.reads++
          return inOutage() ? Effect.fail(transient("read")) : sink.read(sectorId)
        }),
      persist: (batch) =>
        Effect.gen(function*() {
          stats.persists++
          if (Duration.toMillis(delay) > 0) yield* Effect.sleep(delay)
          if (inOutage()) return yield* transient("persist")
          if (deaths > 0) {
            deaths--
            stats.injected++
            return yield* Effect.die(new Error("injected defect in persist"))
          }
          if (rejects(batch)) return yield* rejection()
          const failure = failures.shift()
          if (failure === undefined) return yield* sink.persist(batch)
          stats.injected++
          if (failure.ambiguous) yield* sink.persist(batch)
          return yield* new SinkError({
            reason: failure.reason,
            message: `injected ${failure.reason}${failure.ambiguous ? " after commit" : ""}`
          })
        }),
      verify: (batch) =>
        Effect.suspend(() => {
          stats.verifies++
          if (inOutage()) return Effect.fail(transient("verify"))
          return rejects(batch) ? Effect.fail(rejection()) : sink.verify(batch)
        }),
      deadLetter: (letters) =>
        Effect.suspend(() => inOutage() ? Effect.fail(transient("deadLetter")) : sink.deadLetter(letters)),
      deadLetters: (sectorId) =>
        Effect.suspend(() => inOutage() ? Effect.fail(transient("deadLetters")) : sink.deadLetters(sectorId))
    })

    const faults = Faults.of({
      failNext: (n, options) =>
        Effect.sync(() => {
          for (let i = 0; i < n; i++) {
            failures.push({ reason: options?.reason ?? "Transient", ambiguous: options?.ambiguous ?? false })
          }
        }),
      outage: (duration) =>
        Effect.sync(() => {
          outageUntil = clock.currentTimeMillisUnsafe() + Duration.toMillis(Duration.fromInputUnsafe(duration))
        }),
      slow: (duration) => Effect.sync(() => void (delay = Duration.fromInputUnsafe(duration))),
      poison: (predicate) => Effect.sync(() => void (poisoned = predicate)),
      dieNext: (n) => Effect.sync(() => void (deaths += n)),
      reset: Effect.sync(() => {
        failures = []
        outageUntil = 0
        delay = Duration.zero
        poisoned = undefined
        deaths = 0
      }),
      stats: Effect.sync(() => ({ ...stats }))
    })
    return Context.make(SectorSink, faulty).pipe(Context.add(Faults, faults))
  })).pipe(Layer.provide(inner))
