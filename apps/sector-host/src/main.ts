/**
 * Entry point of sector-host: configuration from the environment, logging, signal handling, the host program.
 */
import { Effect, Layer } from "effect"
import * as HostConfig from "./HostConfig.ts"
import * as Host from "./Host.ts"
import * as Lifecycle from "./Lifecycle.ts"
import * as Logging from "./Logging.ts"
import * as Startup from "./Startup.ts"

const Main = Layer.mergeAll(Lifecycle.layer, Logging.layer).pipe(Layer.provideMerge(HostConfig.layerFromEnv()))

const reportFailure = (error: unknown) => Effect.logError(`sector-host could not start: ${Startup.describe(error)}`)

Lifecycle.runMain(
  Host.program.pipe(
    Effect.tapError(reportFailure),
    Effect.provide(Main),
    // without a valid configuration there is no configured logger either: report with the default one
    Effect.tapErrorTag("ConfigError", reportFailure)
  ),
  { disableErrorReporting: true }
)
