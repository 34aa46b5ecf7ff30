/**
 * The real process on a non-loopback bind: without a token it refuses to start (exit 2, one line saying how to set
 * one) before touching any database; with `ALLOW_UNAUTHENTICATED=true` it starts and warns; with `AUTH_TOKEN` it
 * starts and asks for the token. The host binds 0.0.0.0, but every request goes to 127.0.0.1.
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import { runToExit, scopedExactly } from "../support/HostProcess.ts"

/** The host's own address is 0.0.0.0: requests go to the same port on loopback. */
const loopback = (baseUrl: string) => baseUrl.replace("0.0.0.0", "127.0.0.1")

describe("sector-host on a non-loopback HOST", () => {
  it.live("refuses to start without a token: exit 2 and one line saying how to set one", () =>
    Effect.gen(function*() {
      const port = yield* Port.free
      const { code, output } = yield* Effect.promise(() =>
        runToExit({ HOST: "0.0.0.0", PORT: String(port), DATA_DIR: "/nonexistent/never-created", LOG_FORMAT: "json" })
      )
      assert.strictEqual(code, 2, output)
      const lines = output.trim().split("\n")
      assert.strictEqual(lines.length, 1, output)
      const entry = JSON.parse(lines[0]!) as { message: string; level: string }
      assert.strictEqual(entry.level, "ERROR")
      assert.include(entry.message, "HOST=0.0.0.0 is not a loopback address")
      assert.include(entry.message, "set AUTH_TOKEN")
    }), { timeout: 60_000 })

  it.live("starts with a warning when ALLOW_UNAUTHENTICATED=true, and serves without a token", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      const host = yield* scopedExactly({
        DATABASE_URL: Redacted.value(url),
        HOST: "0.0.0.0",
        PORT: String(port),
        ALLOW_UNAUTHENTICATED: "true",
        LOG_FORMAT: "json"
      })
      const warning = host.output().split("\n").filter((line) => line.includes("without authentication"))
      assert.strictEqual(warning.length, 1, host.output())
      assert.strictEqual((JSON.parse(warning[0]!) as { level: string }).level, "WARN")
      const list = yield* Effect.promise(() => fetch(`${loopback(host.baseUrl)}/sectors`))
      assert.strictEqual(list.status, 200)
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0, host.output())
    }), { timeout: 90_000 })

  it.live("starts with AUTH_TOKEN, asks every route but the probes for it, and never logs it", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      const token = "e2e-token-7f3a9c"
      const host = yield* scopedExactly({
        DATABASE_URL: Redacted.value(url),
        HOST: "0.0.0.0",
        PORT: String(port),
        AUTH_TOKEN: `old-token,${token}`,
        LOG_FORMAT: "json"
      })
      const base = loopback(host.baseUrl)
      const without = yield* Effect.promise(() => fetch(`${base}/metrics`))
      assert.strictEqual(without.status, 401)
      assert.strictEqual(without.headers.get("www-authenticate"), "Bearer")
      const wrong = yield* Effect.promise(() => fetch(`${base}/sectors`, { headers: { authorization: "Bearer nope" } }))
      assert.strictEqual(wrong.status, 401)
      const right = yield* Effect.promise(() => fetch(`${base}/sectors`, { headers: { authorization: `Bearer ${token}` } }))
      assert.strictEqual(right.status, 200)
      assert.strictEqual((yield* Effect.promise(() => fetch(`${base}/healthz`))).status, 200)
      assert.strictEqual((yield* Effect.promise(() => fetch(`${base}/readyz`))).status, 200)
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0, host.output())
      assert.notInclude(host.output(), token)
      assert.notInclude(host.output(), "old-token")
    }), { timeout: 90_000 })
})
