/**
 * A real host for tests that read what it exports: `Host.app` on a fresh database of the test server, listening on a
 * free loopback port, with a metric registry of its own (so no other test's series leak into it).
 */
import { SectorsConfig } from "@sectors/core"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Context, Duration, Effect, Layer, Metric, Option } from "effect"
import { HttpServer } from "effect/http"
import * as Host from "../src/Host.ts"
import * as HostConfig from "../src/HostConfig.ts"
import * as Lifecycle from "../src/Lifecycle.ts"

const host = Layer.unwrap(Effect.gen(function*() {
  const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
  return Host.app.pipe(
    Layer.provideMerge(Lifecycle.layer),
    Layer.provideMerge(HostConfig.layer({ host: "127.0.0.1", port: 0, databaseUrl: Option.some(url) })),
    Layer.provideMerge(SectorsConfig.layer())
  )
}))

/** Runs `f` with the address (`http://127.0.0.1:…`) of a freshly started host, then shuts the host down. */
export const withFreshHost = <A, E>(f: (address: string) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(host)
    const address = yield* HttpServer.addressFormattedWith(Effect.succeed).pipe(Effect.provideContext(context))
    const result = yield* f(address)
    yield* Context.get(context, Lifecycle.Lifecycle).requestShutdown
    return result
  }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map()), Effect.timeout(Duration.seconds(60)))
