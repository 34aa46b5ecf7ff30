/**
 * Who can reach the host, decided before it listens. A host bound to a loopback address (127.0.0.0/8, ::1,
 * `localhost`) is reachable from this machine only; bound anywhere else without `AUTH_TOKEN`, anyone who can reach the
 * port could read and write every sector, so the host refuses to start (exit 2, one line saying how to set a token)
 * unless `ALLOW_UNAUTHENTICATED=true` says it is on purpose — then it starts with a warning.
 */
import { Data, Effect, Runtime } from "effect"
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
export class OpenDoor extends Data.TaggedError("OpenDoor")<{ readonly host: string }> {
  override readonly [Runtime.errorExitCode] = 2
}

/** The one line a refused start writes: what is wrong and the three ways out. */
export const describe = (error: OpenDoor): string =>
  `HOST=${error.host} is not a loopback address and no token is set: set AUTH_TOKEN (or AUTH_TOKEN_FILE) to a ` +
  `secret clients send as "Authorization: Bearer <token>", bind HOST=127.0.0.1, or set ALLOW_UNAUTHENTICATED=true ` +
  `to serve without authentication on purpose`

/** Refuses a non-loopback bind without a token (`OpenDoor`), or warns when `allowUnauthenticated` lets it through. */
export const check = (config: HostConfig["Service"]): Effect.Effect<void, OpenDoor> => {
  if (config.authToken.length > 0 || isLoopback(config.host)) return Effect.void
  if (!config.allowUnauthenticated) return Effect.fail(new OpenDoor({ host: config.host }))
  return Effect.logWarning(
    `sector-host serves HOST=${config.host} without authentication (ALLOW_UNAUTHENTICATED=true): anyone who can ` +
      `reach this port can read and write every sector`
  )
}
