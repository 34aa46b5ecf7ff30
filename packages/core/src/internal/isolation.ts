/**
 * Poison isolation: a batch the sink rejected for its data is bisected with trial runs (`verify`, which writes and
 * rolls back) down to the single entries that are rejected on their own. Those are returned to be dead-lettered;
 * the rest is known to pass and is persisted with the batch's seq range.
 *
 * A bisection step tries the first half, then the second; the first half that is rejected is searched further.
 * After one poison entry is found the rest is tried again, so several poison entries in one batch are all found
 * (each costs about log2(n) trials). If a batch is rejected but no single entry is at fault (only a combination
 * fails), isolation fails with a `Fatal` `SinkError`: the batch is held and the operator alerted, never guessed
 * at. Any failure of a trial other than a rejection (the database went away) ends isolation with that failure;
 * the batch is retried as a whole later.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { Entry } from "../Batch.ts"
import { SinkError } from "../Errors.ts"

/** An entry rejected on its own, with the rejection. */
export interface Poison {
  readonly entry: Entry
  readonly error: SinkError
}

/** What isolation found: the poison entries and the entries that pass without them. */
export interface Isolated {
  readonly poison: ReadonlyArray<Poison>
  readonly rest: ReadonlyArray<Entry>
}

/** Whether a failure is the sink rejecting the data (as opposed to being unreachable, fenced, …). */
export const isRejected = (error: unknown): error is SinkError =>
  error instanceof SinkError && error.reason === "Rejected"

/** Bisects with trial runs to one entry that is rejected on its own; undefined if only a combination fails. */
const findPoison = <E>(
  entries: ReadonlyArray<Entry>,
  verify: (entries: ReadonlyArray<Entry>) => Effect.Effect<void, E>
): Effect.Effect<Entry | undefined, E> =>
  Effect.gen(function*() {
    if (entries.length <= 1) return entries[0]
    const middle = entries.length >> 1
    for (const half of [entries.slice(0, middle), entries.slice(middle)]) {
      const trial = yield* Effect.exit(verify(half))
      if (Exit.isSuccess(trial)) continue
      const error = Cause.findErrorOption(trial.cause)
      if (Option.isSome(error) && isRejected(error.value)) return yield* findPoison(half, verify)
      return yield* Effect.failCause(trial.cause)
    }
    return undefined
  })

/**
 * Isolates the poison entries of `entries`, which the sink rejected with `rejection`. `verify` trial-runs a subset
 * of the batch's entries; `what` names the batch in a `Fatal` error's message.
 */
export const isolate = <E>(
  what: string,
  entries: ReadonlyArray<Entry>,
  rejection: SinkError,
  verify: (entries: ReadonlyArray<Entry>) => Effect.Effect<void, E>
): Effect.Effect<Isolated, E | SinkError> =>
  Effect.gen(function*() {
    const poison: Array<Poison> = []
    let rest = entries
    let error = rejection
    while (true) {
      const found = yield* findPoison(rest, verify)
      if (found === undefined) {
        return yield* new SinkError({
          reason: "Fatal",
          message: `${what} was rejected (${error.message}) but no single entry is at fault`,
          ...(error.code === undefined ? {} : { code: error.code })
        })
      }
      poison.push({ entry: found, error })
      rest = rest.filter((entry) => entry !== found)
      const trial = yield* Effect.exit(verify(rest))
      if (Exit.isSuccess(trial)) return { poison, rest }
      const next = Cause.findErrorOption(trial.cause)
      if (Option.isSome(next) && isRejected(next.value)) {
        error = next.value
        continue
      }
      return yield* Effect.failCause(trial.cause)
    }
  })
