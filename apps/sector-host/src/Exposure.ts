/**
 * Who can reach the host, decided before it listens. A host bound to a loopback address (127.0.0.0/8, ::1,
 * `localhost`) is reachable from this machine only; bound anywhere else without `AUTH_TOKEN`, anyone who can reach the
 * port could read and write every sector, so the host refuses to start (exit 2, one line saying how to set a token)
 * unless `ALLOW_UNAUTHENTICATED=true` says it is on purpose — then it starts with a warning. The runner port of a
 * cluster (`RUNNER_PORT`, bound to `RUNNER_HOST`, else `HOST`) counts the same: without a token, anyone reaching it
 * could send the runner messages. And a runner's address is what its peers dial, so an unspecified address (`0.0.0.0`,
 * `::`) cannot be one (`NoRunnerAddress`).
 */
import { Data, Effect, Option, Runtime } from "effect"
import * as net from "node:net"
import type { HostConfig } from "./HostConfig.ts"

/** Whether `name` is a loopback address or name: 127.0.0.0/8, ::1 (also as `[::1]` or IPv4-mapped), `localhost`. */
export const isLoopback = (name: string): boolean => {
  const host = name.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "")
  if (host === "localhost" || host.endsWith(".localhost")) return true
  if (net.isIPv4(host)) return host.startsWith("127.")
  if (net.isIPv6(host)) {
    if (host === "::1" || host === "0:0:0:0:0:0:0:1") return true
    const mapped = /^(?:0*:)*:?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host)
    return mapped !== null && mapped[1]!.startsWith("127.")
  }
  return false
}

/** The host was asked to serve beyond loopback without a token: it does not start, and exits 2. */
export class OpenDoor extends Data.TaggedError("OpenDoor")<{
  /** The setting that names the address: `HOST` or `RUNNER_HOST`. */
  readonly setting: "HOST" | "RUNNER_HOST"
  readonly host: string
}> {
  override readonly [Runtime.errorExitCode] = 2
}

/** A runner would advertise an address its peers cannot dial (`0.0.0.0`, `::`): it does not start, and exits 2. */
export class NoRunnerAddress extends Data.TaggedError("NoRunnerAddress")<{ readonly host: string }> {
  override readonly [Runtime.errorExitCode] = 2
}

/** The one line a refused start writes: what is wrong and the ways out. */
export const describe = (error: OpenDoor | NoRunnerAddress): string =>
  error._tag === "NoRunnerAddress"
    ? `the runner address would be ${error.host}, which peers cannot dial: set RUNNER_HOST to this host's address ` +
      `on the network its peers share (HOST may stay ${error.host} for binding the HTTP API)`
    : `${error.setting}=${error.host} is not a loopback address and no token is set: set AUTH_TOKEN (or ` +
      `AUTH_TOKEN_FILE) to a secret clients${error.setting === "RUNNER_HOST" ? " and cluster peers" : ""} send as ` +
      `"Authorization: Bearer <token>", bind ${error.setting}=127.0.0.1, or set ALLOW_UNAUTHENTICATED=true to serve ` +
      `without authentication on purpose`

/** Whether `host` is the unspecified address: bind to every interface, but no address to dial. */
const isUnspecified = (host: string): boolean => {
  const bare = host.replace(/^\[(.*)\]$/, "$1")
  return bare === "0.0.0.0" || (net.isIPv6(bare) && /^[0:]+$/.test(bare))
}

/**
 * Refuses a non-loopback bind of the HTTP API or the runner port without a token (`OpenDoor`), or warns when
 * `allowUnauthenticated` lets it through; refuses a runner address peers cannot dial (`NoRunnerAddress`).
 */
export const check = (config: HostConfig["Service"]): Effect.Effect<void, OpenDoor | NoRunnerAddress> =>
  Effect.gen(function*() {
    const runnerHost = Option.isSome(config.runnerPort) ? Option.some(Option.getOrElse(config.runnerHost, () => config.host)) : Option.none()
    if (Option.isSome(runnerHost) && isUnspecified(runnerHost.value)) {
      return yield* new NoRunnerAddress({ host: runnerHost.value })
    }
    const exposed = [
      ...(isLoopback(config.host) ? [] : [{ setting: "HOST" as const, host: config.host }]),
      ...(Option.isNone(runnerHost) || isLoopback(runnerHost.value)
        ? []
        : [{ setting: "RUNNER_HOST" as const, host: runnerHost.value }])
    ]
    if (config.authToken.length > 0 || exposed.length === 0) return
    if (!config.allowUnauthenticated) return yield* new OpenDoor(exposed[0]!)
    for (const { host, setting } of exposed) {
      yield* Effect.logWarning(
        `sector-host serves ${setting}=${host} without authentication (ALLOW_UNAUTHENTICATED=true): anyone who can ` +
          `reach this port can ${setting === "HOST" ? "read and write every sector" : "send this runner messages"}`
      )
    }
  })
