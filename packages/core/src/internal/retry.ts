/**
 * Retrying that costs nothing until the first failure: `Effect.retry` builds its schedule's state on every call,
 * and most calls (a persist, a sector's run) never fail. Wrapped around the call's error handler instead, the
 * schedule starts only on a failure it is handed as its first input — its first delay and its deadline counted from
 * then — as if it had been there from the start.
 */
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"

/**
 * `call` again on `schedule` after it failed with `first` (while `retryWhile` holds, if given): the schedule sees
 * `first` as the first failure, then each later one.
 */
export const retryAfter = <A, E, R>(
  first: E,
  call: Effect.Effect<A, E, R>,
  schedule: Schedule.Schedule<unknown, E>,
  retryWhile?: (error: E) => boolean
): Effect.Effect<A, E, R> => {
  let failed: { readonly error: E } | undefined = { error: first }
  const attempt = Effect.suspend((): Effect.Effect<A, E, R> => {
    if (failed === undefined) return call
    const { error } = failed
    failed = undefined
    return Effect.fail(error)
  })
  return retryWhile === undefined
    ? Effect.retry(attempt, schedule)
    : Effect.retry(attempt, { schedule, while: retryWhile })
}
