import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Option, Redacted } from "effect"
import * as HostConfig from "../src/HostConfig.ts"

const fromEnv = (env: Record<string, string>) =>
  HostConfig.config.pipe(
    Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }).pipe(ConfigProvider.constantCase))
  )

describe("HostConfig", () => {
  it.effect("defaults every field when the environment says nothing", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({})
      assert.deepStrictEqual(config, HostConfig.defaults)
      assert.strictEqual(config.port, 8080)
      assert.strictEqual(config.host, "127.0.0.1")
      assert.strictEqual(config.dataDir, ".sectors/pg")
      assert.isTrue(Option.isNone(config.databaseUrl))
    }))

  it.effect("reads constant-case variables", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({
        PORT: "9090",
        HOST: "127.0.0.2",
        DATABASE_URL: "postgres://a:b@127.0.0.1:5/x",
        DATA_DIR: "/tmp/pg",
        SHUTDOWN_TIMEOUT: "3 seconds",
        LOG_FORMAT: "json"
      })
      assert.strictEqual(config.port, 9090)
      assert.strictEqual(config.host, "127.0.0.2")
      assert.strictEqual(Option.map(config.databaseUrl, Redacted.value).pipe(Option.getOrUndefined), "postgres://a:b@127.0.0.1:5/x")
      assert.strictEqual(config.dataDir, "/tmp/pg")
      assert.strictEqual(Duration.toMillis(config.shutdownTimeout), 3000)
      assert.strictEqual(config.logFormat, "json")
    }))

  it.effect("rejects a port that is not a port", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ PORT: "http" }))
      assert.strictEqual(error._tag, "ConfigError")
    }))
})

describe("HostConfig durations", () => {
  it.effect.each([
    ["250", 250],
    ["250 millis", 250],
    ["10 seconds", 10_000],
    ["1.5 seconds", 1_500]
  ] as const)("reads SHUTDOWN_TIMEOUT=%s as %d ms", ([text, millis]) =>
    Effect.gen(function*() {
      const config = yield* fromEnv({ SHUTDOWN_TIMEOUT: text })
      assert.strictEqual(Duration.toMillis(config.shutdownTimeout), millis)
    }))

  it.effect("rejects a duration without a unit it knows", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ SHUTDOWN_TIMEOUT: "soon" }))
      assert.strictEqual(error._tag, "ConfigError")
    }))
})
