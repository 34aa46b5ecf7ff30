/**
 * When a sector's pending ops become a batch. The policy is a plain value — `minBatch`, `maxWait`, `maxBatch`,
 * `maxPendingKeys` — and `decide` is the whole trigger as a pure function of what is pending and what time it is,
 * so it can be read, property-tested and reused by anyone writing their own flusher.
 *
 * A flusher asks `decide` only while nothing of its sector is in flight (at most one persist at a time): ops that
 * arrive during a persist pile up and go out together afterwards (natural batching). The answer is one of
 * - `Idle`: nothing pending — wait for the next op, with no timer armed (an idle sector costs nothing);
 * - `Wait(millis)`: something pending but no trigger yet — wait for more ops or for `millis`, whichever is first
 *   (deadlines are aligned to a grid of `maxWait` so that sectors flush together and share group commits);
 * - `Flush(trigger)`: take a batch now, for the given reason.
 *
 * The profiles are those of the field report this project answers (docs/ARCHITECTURE.md, "Why"); none needs an
 * idle delay.
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"

/** The four numbers that decide when pending ops become a batch. */
export class BatchPolicy extends Schema.Class<BatchPolicy>("@sectors/core/BatchPolicy")(
  Schema.Struct({
    /** Flush as soon as this many ops are pending. */
    minBatch: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
    /** Flush once the oldest pending op has waited this long, whatever the count. */
    maxWait: Schema.Duration,
    /** Never put more ops than this in one batch; a longer backlog goes out as back-to-back batches. */
    maxBatch: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
    /**
     * Distinct (entity, component) keys a sector may hold pending. At it a submission waits for room (a batch going
     * out, which the sector sends at once), so producers feel backpressure instead of the heap growing.
     */
    maxPendingKeys: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
  }).check(
    Schema.makeFilter((policy) =>
      policy.maxBatch >= policy.minBatch
        ? undefined
        : { path: ["maxBatch"], issue: `maxBatch (${policy.maxBatch}) must be at least minBatch (${policy.minBatch})` }
    )
  )
) {}

/** The named profiles. */
export type ProfileName = "aggressive" | "balanced" | "conservative" | "immediate"

/** Every profile name, in the order of the field report's table. */
export const profileNames: ReadonlyArray<ProfileName> = ["aggressive", "balanced", "conservative", "immediate"]

/** Pending keys a sector may hold before it applies backpressure, in every profile. */
export const defaultMaxPendingKeys = 20_000

/**
 * The field report's profiles. `immediate` is the old tight loop (a batch the moment an op is pending; what arrives
 * while one is being written goes in the next), kept only as the baseline benchmarks compare against.
 */
export const profiles: Readonly<Record<ProfileName, BatchPolicy>> = {
  aggressive: BatchPolicy.make({
    minBatch: 100,
    maxWait: Duration.millis(50),
    maxBatch: 2000,
    maxPendingKeys: defaultMaxPendingKeys
  }),
  balanced: BatchPolicy.make({
    minBatch: 50,
    maxWait: Duration.millis(25),
    maxBatch: 1000,
    maxPendingKeys: defaultMaxPendingKeys
  }),
  conservative: BatchPolicy.make({
    minBatch: 20,
    maxWait: Duration.millis(10),
    maxBatch: 500,
    maxPendingKeys: defaultMaxPendingKeys
  }),
  immediate: BatchPolicy.make({
    minBatch: 1,
    maxWait: Duration.zero,
    maxBatch: 1000,
    maxPendingKeys: defaultMaxPendingKeys
  })
}

/** The default profile: `balanced`. */
export const defaultPolicy: BatchPolicy = profiles.balanced

/** Why a batch was taken. Also the `reason` label of the flush-trigger metric. */
export type Trigger = "min_batch" | "max_wait" | "max_batch" | "shutdown" | "manual"

/** Every trigger, for metrics and reports. */
export const triggers: ReadonlyArray<Trigger> = ["min_batch", "max_wait", "max_batch", "shutdown", "manual"]

/** What a flusher sees when it decides: pending op count, when the oldest pending op arrived, and the time. */
export interface Observation {
  /** Ops accepted but not yet in a batch. */
  readonly ops: number
  /** Clock time (ms) when the oldest of them became pending; ignored when `ops` is 0. */
  readonly oldestAt: number
  /** Clock time (ms) now. */
  readonly now: number
  /** A flush that was asked for and must not wait for a trigger. */
  readonly requested?: "shutdown" | "manual" | undefined
  /**
   * The sector holds `maxPendingKeys` keys: it takes nothing more until a batch goes out, so the batch is as large
   * as it can get (`max_batch`).
   */
  readonly full?: boolean | undefined
}

/** The answer of `decide`. */
export type Decision =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Wait"; readonly millis: number }
  | { readonly _tag: "Flush"; readonly trigger: Trigger }

const idle: Decision = { _tag: "Idle" }
const flushes: Readonly<Record<Trigger, Decision>> = {
  min_batch: { _tag: "Flush", trigger: "min_batch" },
  max_wait: { _tag: "Flush", trigger: "max_wait" },
  max_batch: { _tag: "Flush", trigger: "max_batch" },
  shutdown: { _tag: "Flush", trigger: "shutdown" },
  manual: { _tag: "Flush", trigger: "manual" }
}

/**
 * When a batch whose oldest op arrived at `oldestAt` is due: the first multiple of `maxWait` after it. Deadlines
 * sit on one clock-wide grid, so sectors that have ops pending reach theirs at the same moment and their batches
 * share a transaction (group commit) instead of trickling in one by one; an op still never waits longer than
 * `maxWait`.
 */
export const deadline = (policy: BatchPolicy, oldestAt: number): number => {
  const maxWait = Duration.toMillis(policy.maxWait)
  return maxWait <= 0 ? oldestAt : (Math.floor(oldestAt / maxWait) + 1) * maxWait
}

/**
 * The trigger: `Idle` when nothing is pending; otherwise `Flush` when `maxBatch` ops are pending or the sector is
 * `full` (both `max_batch`: the batch can grow no more), a flush was requested, `minBatch` ops are pending, or the
 * batch's `deadline` (at most `maxWait` after its oldest op) has come; otherwise `Wait` until then.
 *
 * **Gotchas** Never answers `Flush` with nothing pending (a batch is never empty), and a `Wait` never reaches past
 * `maxWait` after the oldest op, so no pending op waits longer than `maxWait` plus the persist in flight.
 */
export const decide = (policy: BatchPolicy, pending: Observation): Decision => {
  if (pending.ops <= 0) return idle
  if (pending.ops >= policy.maxBatch || pending.full === true) return flushes.max_batch
  if (pending.requested !== undefined) return flushes[pending.requested]
  if (pending.ops >= policy.minBatch) return flushes.min_batch
  const left = deadline(policy, pending.oldestAt) - pending.now
  return left <= 0 ? flushes.max_wait : { _tag: "Wait", millis: left }
}
