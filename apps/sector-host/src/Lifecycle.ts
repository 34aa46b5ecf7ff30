/**
 * The host's life from start to exit: its phase (`starting` → `ready` → `draining`), the shutdown signal, and the
 * process runner. SIGINT and SIGTERM do not interrupt the program: the first one moves the host to `draining`
 * (readiness turns 503 at once) and lets the program finish its shutdown in order, so the exit code is 0. The same
 * signal often arrives twice — from the terminal and again through npm — so repeats within `duplicateWindow` count
 * once; a later one forces the exit (code 1) after the registered reporters have said what was not flushed.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"

/** The shutdown ended with accepted ops not persisted (the sink was failing): exit non-zero. */
export class Unflushed extends Data.TaggedError("Unflushed")<{ readonly report: { readonly unflushed: number } }> {}

/** Where the host is in its life. */
export type Phase = "starting" | "ready" | "draining"

/** How long after the first signal a repeat is taken for the same one. */
export const duplicateWindowMs = 1_000

export class Lifecycle extends Context.Service<Lifecycle, {
  /** The current phase. */
  readonly phase: Effect.Effect<Phase>
  /** Marks start-up complete (only from `starting`). */
  readonly markReady: Effect.Effect<void>
  /** Waits for the first SIGINT/SIGTERM (or `requestShutdown`). */
  readonly awaitShutdown: Effect.Effect<void>
  /** Starts the shutdown as a signal would. */
  readonly requestShutdown: Effect.Effect<void>
  /**
   * Registers what a forced exit (second signal) must say, e.g. what was not flushed; its words join the one line
   * logged before exiting. Removed when the caller's scope closes.
   */
  readonly onForcedExit: (report: () => string) => Effect.Effect<void, never, Scope.Scope>
}>()("sector-host/Lifecycle") {}

/** Installs the signal handlers for the lifetime of the layer. */
export const layer: Layer.Layer<Lifecycle> = Layer.effect(Lifecycle)(Effect.gen(function*() {
  let phase: Phase = "starting"
  let firstSignalAt: number | undefined
  const reporters = new Set<() => string>()
  const shutdown = yield* Deferred.make<void>()

  const beginDraining = () => {
    phase = "draining"
    Deferred.doneUnsafe(shutdown, Effect.void)
  }
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now()
    if (firstSignalAt === undefined) {
      firstSignalAt = now
      beginDraining()
      return
    }
    if (now - firstSignalAt < duplicateWindowMs) return
    const words: Array<string> = [`second ${signal}: forced exit`]
    for (const report of reporters) {
      try {
        words.push(report())
      } catch {
        // a reporter must not stop the forced exit
      }
    }
    process.stderr.write(
      `${JSON.stringify({ level: "FATAL", message: words.join("; "), timestamp: new Date().toISOString() })}\n`
    )
    process.exit(1)
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
    }),
    () =>
      Effect.sync(() => {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      })
  )

  return Lifecycle.of({
    phase: Effect.sync(() => phase),
    markReady: Effect.sync(() => {
      if (phase === "starting") phase = "ready"
    }),
    awaitShutdown: Deferred.await(shutdown),
    requestShutdown: Effect.sync(beginDraining),
    onForcedExit: (report) =>
      Effect.acquireRelease(Effect.sync(() => reporters.add(report)), () => Effect.sync(() => reporters.delete(report)))
        .pipe(Effect.asVoid)
  })
}))

/**
 * Runs the host program as the process: the exit code follows its result (0 on success, 1 on failure) and the
 * process exits once it is done, even if a library left a handle open. Signals are the program's business
 * (`Lifecycle`), not the runner's, so unlike `NodeRuntime.runMain` a SIGTERM is not an interruption (exit 130).
 */
export const runMain = Runtime.makeRunMain(({ fiber, teardown }) => {
  fiber.addObserver((exit) => teardown(exit, (code) => process.exit(code)))
})
