/**
 * Entry point of sector-host: the command line and the environment become one configuration, then logging,
 * signal handling and the host program. Exit code 0 after a clean shutdown, 1 when it could not start (another host
 * holds the database, among others), when accepted ops were left unflushed or when it lost the database to another
 * host, 2 for bad flags and for a non-loopback `HOST` without a token (`Exposure`).
 */
import { SectorsConfig } from "@sectors/core"
import { ConfigProvider, Effect, Layer, Result } from "effect"
import * as CommandLine from "./CommandLine.ts"
import * as Host from "./Host.ts"
import * as HostConfig from "./HostConfig.ts"
import * as Lifecycle from "./Lifecycle.ts"
import * as Logging from "./Logging.ts"
import * as Startup from "./Startup.ts"
import * as Telemetry from "./Telemetry.ts"

const parsed = CommandLine.parse(process.argv.slice(2))
if (Result.isFailure(parsed)) {
  process.stderr.write(`sector-host: ${parsed.failure}\n`)
  process.exit(2)
} else if (parsed.success._tag === "Help") {
  process.stdout.write(`${CommandLine.help()}\n`)
  process.exit(0)
} else {
  const provider = CommandLine.provider(parsed.success.settings, process.env)
  const configs = Layer.mergeAll(
    Layer.effect(HostConfig.HostConfig)(HostConfig.config),
    Layer.effect(SectorsConfig.SectorsConfig)(SectorsConfig.config)
  )
  const Main = Layer.mergeAll(Lifecycle.layer, Logging.layer, Telemetry.layer).pipe(
    Layer.provideMerge(configs),
    Layer.provide(ConfigProvider.layer(provider))
  )
  const reportFailure = (error: unknown) =>
    // a host that lost its database has said so when it happened, and then shut down in order
    error instanceof Host.DatabaseLost
      ? Effect.void
      : Effect.logError(`sector-host could not start: ${Startup.describe(error)}`)

  const warnings = Effect.forEach(CommandLine.secretWarnings(parsed.success.settings), (line) => Effect.logWarning(line), {
    discard: true
  })

  Lifecycle.runMain(
    warnings.pipe(
      Effect.andThen(Host.program),
      Effect.tapError(reportFailure),
      Effect.flatMap((report) => report.unflushed > 0 ? Effect.fail(new Lifecycle.Unflushed({ report })) : Effect.void),
      Effect.provide(Main),
      // without a valid configuration there is no configured logger either: report with the default one
      Effect.tapErrorTag("ConfigError", reportFailure)
    ),
    { disableErrorReporting: true }
  )
}
