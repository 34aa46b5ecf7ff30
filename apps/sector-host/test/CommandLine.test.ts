import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as CommandLine from "../src/CommandLine.ts"

const settings = (argv: ReadonlyArray<string>) => {
  const parsed = CommandLine.parse(argv)
  assert.isTrue(Result.isSuccess(parsed) && parsed.success._tag === "Run")
  return (parsed as Result.Success<{ _tag: "Run"; settings: Record<string, string> }, string>).success.settings
}

describe("CommandLine.secretWarnings", () => {
  it.effect("warns once for each secret given as a flag, without its value, naming what to use instead", () =>
    Effect.sync(() => {
      const warnings = CommandLine.secretWarnings(
        settings(["--database-url", "postgres://u:s3cret@127.0.0.1/db", "--auth-token=tok3n", "--port", "9000"])
      )
      assert.strictEqual(warnings.length, 2)
      assert.include(warnings[0], "--database-url on the command line shows in `ps`")
      assert.include(warnings[0], "DATABASE_URL_FILE")
      assert.include(warnings[1], "--auth-token on the command line shows in `ps`")
      assert.include(warnings[1], "AUTH_TOKEN_FILE")
      for (const warning of warnings) {
        assert.notInclude(warning, "s3cret")
        assert.notInclude(warning, "tok3n")
      }
    }))

  it.effect("says nothing when no secret is on the command line", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(CommandLine.secretWarnings(settings(["--port", "9000", "--database-url-file", "/run/url"])), [])
    }))
})

describe("CommandLine cluster flags", () => {
  it.effect("maps --runner-port and --runner-host to RUNNER_PORT and RUNNER_HOST", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(settings(["--runner-port", "34431", "--runner-host=10.0.0.7"]), {
        RUNNER_PORT: "34431",
        RUNNER_HOST: "10.0.0.7"
      })
    }))
})
