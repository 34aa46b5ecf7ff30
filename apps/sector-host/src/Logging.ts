/**
 * Log output of the host: JSON lines (one object per line, for collectors) or human-readable lines, and the
 * minimum level, both from `HostConfig`. `auto` picks pretty output only when stderr is a terminal.
 */
import { Layer, Logger, References } from "effect"
import { HostConfig } from "./HostConfig.ts"

export const layer = Layer.unwrap(HostConfig.useSync((config) => {
  const pretty = config.logFormat === "pretty" || (config.logFormat === "auto" && process.stderr.isTTY === true)
  return Layer.mergeAll(
    Logger.layer([pretty ? Logger.consolePretty() : Logger.consoleJson]),
    Layer.succeed(References.MinimumLogLevel, config.logLevel)
  )
}))
