/**
 * Runs the real sector-host as a child process (the way `npm start` does: `node apps/sector-host/src/main.ts`) for
 * end-to-end tests: start it with an environment, wait for its "listening" log line, talk to it over HTTP on
 * 127.0.0.1, signal it and collect its exit code and output.
 */
import { Port } from "@sectors/pg-embedded"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** The repository root, where `npm start` runs. */
export const root = fileURLToPath(new URL("../../", import.meta.url))

/** The host's entry point. */
export const entry = fileURLToPath(new URL("../../apps/sector-host/src/main.ts", import.meta.url))

export interface Host {
  readonly child: ChildProcess
  readonly baseUrl: string
  /** Everything the host wrote to stdout and stderr so far. */
  readonly output: () => string
  /** Resolves with the exit code (or the signal) once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly signal: (signal: NodeJS.Signals) => void
}

/** Spawns the host with exactly `env` (plus PATH/HOME), collecting everything it writes to stdout and stderr. */
const spawnHost = (env: Record<string, string>, args: ReadonlyArray<string>) => {
  const child = spawn(process.execPath, [entry, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  return { child, output: () => output }
}

/**
 * Starts the host with exactly `env` (plus PATH/HOME), waits until it logs that it listens, and returns it.
 * Rejects with its output if it exits first or does not come up within `timeoutMs`.
 */
export const startHost = async (
  env: Record<string, string>,
  timeoutMs = 60_000,
  args: ReadonlyArray<string> = []
): Promise<Host> => {
  const { child, output } = spawnHost(env, args)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal }))
  )
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host did not start within ${timeoutMs} ms:\n${output()}`)), timeoutMs)
    const check = () => {
      const match = /listening on (https?:\/\/[0-9.]+:\d+)/.exec(output())
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    }
    child.stdout.on("data", check)
    child.stderr.on("data", check)
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`host exited (code ${code}, signal ${signal}) before listening:\n${output()}`))
    })
  })
  return { child, baseUrl, output, exited, signal: (signal) => child.kill(signal) }
}

/** Runs the host with `env` until it exits by itself (a start-up failure); resolves with its exit and output. */
export const runToExit = (env: Record<string, string>, timeoutMs = 60_000, args: ReadonlyArray<string> = []) =>
  new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const { child, output } = spawnHost(env, args)
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`host still running after ${timeoutMs} ms:\n${output()}`))
    }, timeoutMs)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, output: output() })
    })
  })

/** JSON over HTTP to the host. */
export const call = async (
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown
): Promise<{ readonly status: number; readonly headers: Headers; readonly body: any }> => {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } })
  })
  const text = await response.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // not JSON (metrics)
  }
  return { status: response.status, headers: response.headers, body: parsed }
}

/** Resolves once the host's output contains `text` (logs are written after the answer that caused them). */
export const waitForOutput = async (host: Host, text: string, timeoutMs = 10_000): Promise<void> => {
  const until = Date.now() + timeoutMs
  while (!host.output().includes(text)) {
    if (Date.now() > until) throw new Error(`"${text}" not in the host's output within ${timeoutMs} ms:\n${host.output()}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Kills the host if it still runs and waits for it to exit. */
const kill = (host: Host) =>
  Effect.promise(async () => {
    if (host.child.exitCode === null && host.child.signalCode === null) host.signal("SIGKILL")
    await host.exited
  })

/** `startHost` as a scoped resource: the host is killed when the scope closes if it still runs. */
export const scopedExactly = (env: Record<string, string>, args: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(Effect.promise(() => startHost(env, 60_000, args)), kill)

/** `env` with a free port and JSON logs unless it names them. */
const withDefaults = async (env: Record<string, string>) => ({ PORT: String(await Port.freeAsync()), LOG_FORMAT: "json", ...env })

/** The host as a scoped resource: started with `env` on a free port, killed when the scope closes if still running. */
export const scoped = (env: Record<string, string>, args: ReadonlyArray<string> = []) =>
  Effect.flatMap(Effect.promise(() => withDefaults(env)), (env) => scopedExactly(env, args))

/**
 * For tests that restart the host: `next()` starts another one with `env` on a free port; every host started is
 * killed when the scope closes if it still runs.
 */
export const succession = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const started: Array<Host> = []
    yield* Effect.addFinalizer(() => Effect.forEach(started, kill, { discard: true }))
    return async () => {
      const host = await startHost(await withDefaults(env))
      started.push(host)
      return host
    }
  })
