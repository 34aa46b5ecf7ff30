/**
 * HTTPS on the host's port when `TLS_CERT` and `TLS_KEY` name PEM files: the same routes, guard and limits, over
 * TLS. One of them without the other is a configuration error, found before the host touches anything: it does not
 * start (exit 2, one line saying to set both or neither).
 */
import { Data, Effect, Option, Runtime } from "effect"
import * as fs from "node:fs"
import type { HostConfig } from "./HostConfig.ts"

/** `TLS_CERT` without `TLS_KEY` or the other way round: the host does not start, and exits 2. */
export class HalfTls extends Data.TaggedError("HalfTls")<{ readonly missing: "TLS_CERT" | "TLS_KEY" }> {
  override readonly [Runtime.errorExitCode] = 2
}

/** The one line a refused start writes. */
export const describe = (error: HalfTls): string => {
  const given = error.missing === "TLS_KEY" ? "TLS_CERT" : "TLS_KEY"
  return `invalid configuration: ${given} is set without ${error.missing}: set both (PEM files) to serve HTTPS, ` +
    `or neither to serve plain HTTP`
}

/** The certificate and key to serve with, if both are configured; `HalfTls` if only one is. */
export const check = (
  config: Pick<HostConfig["Service"], "tlsCert" | "tlsKey">
): Effect.Effect<void, HalfTls> =>
  Option.isSome(config.tlsCert) === Option.isSome(config.tlsKey)
    ? Effect.void
    : Effect.fail(new HalfTls({ missing: Option.isSome(config.tlsCert) ? "TLS_KEY" : "TLS_CERT" }))

/** The PEM contents to hand to `https.createServer`, read now, or `undefined` for plain HTTP. */
export const credentials = (
  config: Pick<HostConfig["Service"], "tlsCert" | "tlsKey">
): { readonly cert: Buffer; readonly key: Buffer } | undefined =>
  Option.isSome(config.tlsCert) && Option.isSome(config.tlsKey)
    ? { cert: fs.readFileSync(config.tlsCert.value), key: fs.readFileSync(config.tlsKey.value) }
    : undefined
