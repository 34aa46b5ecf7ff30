/**
 * The runtime's spans: whether one is worth making, and what it says about how it ended (an `outcome` attribute, so
 * that a trace backend can group and filter spans by it without reading span events or statuses).
 *
 * A span costs a few µs to make and end, and effect's native tracer — the one in place when nothing exports traces —
 * keeps its spans nowhere: only code running inside one could see it, and none of ours reads them. So a batch's span
 * is made only under a tracer that records it, as effect's HTTP server makes no request span under the native tracer
 * ("its spans are unobservable").
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"

/** Whether spans made with `context` are recorded: its tracer is not effect's native one, which keeps nothing. */
export const records = (context: Context.Context<never>): boolean =>
  Context.get(context, Tracer.Tracer) !== Tracer.nativeTracer

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
