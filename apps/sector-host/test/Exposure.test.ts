/**
 * Which binds count as loopback, and what the host does with a bind beyond it: refuse without a token (exit code 2),
 * start with a warning when `ALLOW_UNAUTHENTICATED` says so, start quietly with a token. The real process is tested
 * end to end in test/e2e/Exposure.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Redacted, Runtime } from "effect"
import * as Exposure from "../src/Exposure.ts"
import * as HostConfig from "../src/HostConfig.ts"

describe("Exposure.isLoopback", () => {
  it.each(["127.0.0.1", "127.255.0.9", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost", "LOCALHOST", "a.localhost"])(
    "counts %s as loopback",
    (host) => assert.isTrue(Exposure.isLoopback(host))
  )
  it.each(["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "example.com", "localhost.example", "127.0.0.1.nip.io", ""])(
    "does not count %j as loopback",
    (host) => assert.isFalse(Exposure.isLoopback(host))
  )
})

describe("Exposure.check", () => {
  const config = (options: Partial<HostConfig.HostConfig["Service"]>) => ({ ...HostConfig.defaults, ...options })

  it.effect("refuses a non-loopback bind without a token, with exit code 2 and a line naming AUTH_TOKEN", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Exposure.check(config({ host: "0.0.0.0" })))
      assert.strictEqual(error._tag, "OpenDoor")
      assert.strictEqual(Runtime.getErrorExitCode(error), 2)
      assert.include(Exposure.describe(error), "AUTH_TOKEN")
      assert.include(Exposure.describe(error), "ALLOW_UNAUTHENTICATED=true")
    }))

  it.effect("refuses a runner port beyond loopback without a token, naming RUNNER_HOST", () =>
    Effect.gen(function*() {
      for (
        const options of [
          { runnerPort: Option.some(9431), runnerHost: Option.some("10.0.0.7") },
          { runnerPort: Option.some(9431), host: "10.0.0.7" }
        ]
      ) {
        const error = yield* Effect.flip(Exposure.check(config(options)))
        assert.strictEqual(error._tag, "OpenDoor")
        assert.strictEqual(Runtime.getErrorExitCode(error), 2)
        assert.include(Exposure.describe(error), "=10.0.0.7")
      }
      const runnerOnly = yield* Effect.flip(
        Exposure.check(config({ runnerPort: Option.some(9431), runnerHost: Option.some("10.0.0.7") }))
      )
      assert.include(Exposure.describe(runnerOnly), "RUNNER_HOST=10.0.0.7")
    }))

  it.effect("refuses a runner address peers cannot dial (0.0.0.0, ::), token or not", () =>
    Effect.gen(function*() {
      for (
        const options of [
          { runnerPort: Option.some(9431), host: "0.0.0.0", authToken: [Redacted.make("t")] },
          { runnerPort: Option.some(9431), runnerHost: Option.some("::"), authToken: [Redacted.make("t")] }
        ]
      ) {
        const error = yield* Effect.flip(Exposure.check(config(options)))
        assert.strictEqual(error._tag, "NoRunnerAddress")
        assert.strictEqual(Runtime.getErrorExitCode(error), 2)
        assert.include(Exposure.describe(error), "RUNNER_HOST")
      }
    }))

  it.effect("lets loopback, a token, or ALLOW_UNAUTHENTICATED through", () =>
    Effect.gen(function*() {
      for (
        const options of [
          {},
          { host: "::1" },
          { host: "0.0.0.0", authToken: [Redacted.make("t")] },
          { host: "0.0.0.0", allowUnauthenticated: true },
          { runnerPort: Option.some(9431) },
          { runnerPort: Option.some(9431), runnerHost: Option.some("10.0.0.7"), authToken: [Redacted.make("t")] },
          { runnerPort: Option.some(9431), host: "0.0.0.0", runnerHost: Option.some("10.0.0.7"), allowUnauthenticated: true }
        ]
      ) {
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(Exposure.check(config(options)))), JSON.stringify(options))
      }
    }))
})
