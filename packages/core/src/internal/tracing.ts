/**
 * What the runtime's spans say about how they ended: an `outcome` attribute, so that a trace backend can group and
 * filter spans by it without reading span events or statuses.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"

/** `success`, the error's `_tag` (`MailboxFull`, `SinkUnavailable`…), `interrupted`, or `defect`. */
export const outcome = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isSome(error)) {
    const tag = (error.value as { readonly _tag?: unknown } | null)?._tag
    return typeof tag === "string" ? tag : "failure"
  }
  return Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "defect"
}

/** Sets `outcome` on the current span when `self` ends; put it inside the `withSpan` it annotates. */
export const withOutcome = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.onExit(self, (exit) => Effect.annotateCurrentSpan("outcome", outcome(exit)))
