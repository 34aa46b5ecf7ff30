import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect } from "effect"
import { BatchPolicy, SectorsConfig } from "../src/index.ts"

const fromEnv = (env: Record<string, string>) =>
  SectorsConfig.config.pipe(
    Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }).pipe(ConfigProvider.constantCase))
  )

describe("SectorsConfig", () => {
  it.effect("defaults to the balanced profile and documented values", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({})
      assert.deepStrictEqual(config, SectorsConfig.defaults)
      assert.strictEqual(config.policy, BatchPolicy.profiles.balanced)
    }))

  it.effect("starts from BATCH_PROFILE and applies MIN_BATCH / MAX_WAIT / MAX_BATCH / MAX_PENDING_KEYS", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({ BATCH_PROFILE: "aggressive", MAX_WAIT: "75", MAX_PENDING_KEYS: "500" })
      assert.strictEqual(config.profile, "aggressive")
      assert.strictEqual(config.policy.minBatch, 100)
      assert.strictEqual(Duration.toMillis(config.policy.maxWait), 75)
      assert.strictEqual(config.policy.maxBatch, 2000)
      assert.strictEqual(config.policy.maxPendingKeys, 500)
    }))

  it.effect("reads durations as `250 millis`, `2 seconds` or plain milliseconds", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({ SHUTDOWN_TIMEOUT: "2 seconds", RETRY_BASE: "15", PASSIVATE_AFTER: "Infinity" })
      assert.strictEqual(Duration.toMillis(config.shutdownTimeout), 2000)
      assert.strictEqual(Duration.toMillis(config.retryBase), 15)
      assert.isFalse(Duration.isFinite(config.passivateAfter))
    }))

  it.effect.each([
    [{ BATCH_PROFILE: "fast" }, "batchProfile"],
    [{ MIN_BATCH: "0" }, "minBatch"],
    [{ MIN_BATCH: "ten" }, "minBatch"],
    [{ MIN_BATCH: "100", MAX_BATCH: "10" }, "maxBatch"],
    [{ MAX_WAIT: "soon" }, "maxWait"],
    [{ MAILBOX_CAPACITY: "-1" }, "mailboxCapacity"]
  ] as const)("rejects %o, naming %s", ([env, field]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv(env))
      assert.strictEqual(error._tag, "ConfigError")
      assert.include(String(error), field)
    }))
})

describe("SectorsConfig.layer", () => {
  it.effect("takes the policy of the profile it is given", () =>
    Effect.gen(function*() {
      const config = yield* SectorsConfig.SectorsConfig
      assert.strictEqual(config.policy, BatchPolicy.profiles.aggressive)
    }).pipe(Effect.provide(SectorsConfig.layer({ profile: "aggressive" }))))
})

describe("SectorsConfig.keys", () => {
  it.effect("lists exactly the keys config reads", () =>
    Effect.gen(function*() {
      const seen = new Set<string>()
      const recording = ConfigProvider.make((path) => {
        seen.add(String(path[0]))
        return Effect.succeed(undefined)
      })
      yield* SectorsConfig.config.pipe(Effect.provideService(ConfigProvider.ConfigProvider, recording))
      assert.deepStrictEqual([...seen].sort(), [...SectorsConfig.keys].sort())
    }))
})
