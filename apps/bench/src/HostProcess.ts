/**
 * A real `sector-host` process for the suites that measure through HTTP (`HttpVariant`, `ClusterVariant`): started
 * with effect's `ChildProcess` (the Node spawner comes from `main.ts`) with exactly the environment given plus a free
 * `PORT` and JSON logs, ready once it logs that it listens, stopped with SIGTERM and expected to exit 0. It runs in
 * the bench's process group (Ctrl-C reaches it too) and is killed when the scope closes unless it already exited, so a
 * host that failed to start or a run that died does not stay behind.
 */
import { Port } from "@sectors/pg-embedded"
import { Deferred, Effect, Exit, type Redacted, Stream } from "effect"
import { ChildProcess } from "effect/process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

/** The host's entry point in this checkout (another checkout's can be given to `start`, to compare with it). */
export const entry = fileURLToPath(new URL("../../sector-host/src/main.ts", import.meta.url))

/** How a process ended, in words: its exit code, or the signal that ended it. */
const describe = (exit: Exit.Exit<number, unknown>) => Exit.isSuccess(exit) ? `code ${exit.value}` : "a signal"

/** How long the host may take to say it listens. */
const startTimeout = "60 seconds"

/** A running host. */
export interface Host {
  /** `http://127.0.0.1:<port>`. */
  readonly baseUrl: string
  /** Everything it wrote to stdout and stderr so far. */
  readonly output: () => string
  /** CPU seconds it has used so far (user and system, from `/proc`; `NaN` where there is none). */
  readonly cpuSeconds: () => number
  /** SIGTERM, then its exit: fails with its last output unless it exits 0 (it drained and flushed everything). */
  readonly stop: Effect.Effect<void, Error>
}

/**
 * Starts the host of `options.entry` (default: this checkout's; or another server that logs `listening on`) with `env` (`DATABASE_URL`, `RUNNER_PORT`, …) on a
 * free port and waits until it listens. Fails with its output if it exits first or does not listen within a minute.
 */
export const start = (
  env: Record<string, string | Redacted.Redacted<string>>,
  options: {
    readonly entry?: string | undefined
    /** Node's own flags, before the entry (`--cpu-prof`). */
    readonly execArgv?: ReadonlyArray<string> | undefined
    /** The entry's arguments. */
    readonly args?: ReadonlyArray<string> | undefined
  } = {}
) =>
  Effect.gen(function*() {
    const port = yield* Port.free
    const host = yield* ChildProcess.make(process.execPath, [
      ...(options.execArgv ?? []),
      options.entry ?? entry,
      ...(options.args ?? [])
    ], {
      env: { PATH: process.env.PATH ?? "", PORT: String(port), LOG_FORMAT: "json", ...env },
      stdin: "ignore",
      detached: false,
      killSignal: "SIGKILL"
    })
    let output = ""
    const listening = yield* Deferred.make<void>()
    yield* host.all.pipe(
      Stream.decodeText(),
      Stream.runForEach((text) =>
        Effect.suspend(() => {
          output += text
          return output.includes("listening on") ? Deferred.succeed(listening, undefined) : Effect.void
        })
      ),
      Effect.forkScoped
    )
    yield* Deferred.await(listening).pipe(
      Effect.raceFirst(Effect.flatMap(Effect.exit(host.exitCode), (exit) =>
        Effect.fail(new Error(`sector-host exited before listening (${describe(exit)}):\n${output}`))
      )),
      Effect.timeoutOrElse({
        duration: startTimeout,
        orElse: () => Effect.fail(new Error(`sector-host did not start within ${startTimeout}:\n${output}`))
      })
    )
    const stop = Effect.gen(function*() {
      yield* host.kill({ killSignal: "SIGTERM" })
      const exit = yield* Effect.exit(host.exitCode)
      if (Exit.isFailure(exit) || exit.value !== 0) {
        return yield* Effect.fail(new Error(`sector-host exited with ${describe(exit)}:\n${output.slice(-2000)}`))
      }
    }).pipe(Effect.mapError((error) => error instanceof Error ? error : new Error(String(error))))
    const cpuSeconds = () => {
      try {
        // fields 14 and 15 of /proc/<pid>/stat, after the command's closing parenthesis: utime, stime in clock ticks
        const fields = fs.readFileSync(`/proc/${host.pid}/stat`, "utf8").split(") ")[1]!.split(" ")
        return (Number(fields[11]) + Number(fields[12])) / 100
      } catch {
        return Number.NaN
      }
    }
    return { baseUrl: `http://127.0.0.1:${port}`, output: () => output, cpuSeconds, stop } satisfies Host
  })
