/**
 * The bound on requests waiting for durability (`MAX_DURABLE_WAITERS`), one for the whole host: `ack=durable`
 * submissions and flushes of the HTTP API and `ack: "durable"` frames of `/ingest` count against the same places.
 * A wait takes a place before anything is submitted — with none left it fails at once with 503 `too-many-waiters`, so
 * nothing of it is applied — and gives it back however it ends (answered, timed out, interrupted by a client that
 * went away).
 */
import { Effect } from "effect"
import * as Problem from "./Problem.ts"

export interface DurableWaiters {
  /** Runs `effect` in one of the places, or fails with `too-many-waiters` at once if none is left. */
  readonly waiting: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | Problem.Problem, R>
  /** Takes a place for a wait that is not an effect (`Ingest`'s durable frames): `false` when none is left. */
  readonly tryTake: () => boolean
  /** Gives back a place `tryTake` took, once. */
  readonly giveBack: () => void
  /** How many places are taken now. */
  readonly taken: () => number
}

/** `max` places. */
export const make = (max: number): DurableWaiters => {
  let taken = 0
  const tryTake = () => {
    if (taken >= max) return false
    taken++
    return true
  }
  const giveBack = () => void taken--
  return {
    waiting: <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Problem.Problem, R> =>
      Effect.suspend((): Effect.Effect<A, E | Problem.Problem, R> =>
        tryTake() ? Effect.ensuring(effect, Effect.sync(giveBack)) : Effect.fail(Problem.tooManyWaiters(max))
      ),
    tryTake,
    giveBack,
    taken: () => taken
  }
}
