import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { call, runToExit, scopedExactly } from "../support/HostProcess.ts"

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A fresh directory (readable by the postgres it will hold), removed when the scope closes. */
const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
      await fs.chmod(dir, 0o755)
      return dir
    }),
    (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
  )

describe("sector-host process", () => {
  it.live("serves /healthz and /readyz on an external DATABASE_URL and exits 0 on SIGTERM", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      const host = yield* scopedExactly({ DATABASE_URL: Redacted.value(url), PORT: String(port) })
      assert.strictEqual(host.baseUrl, `http://127.0.0.1:${port}`)
      assert.notInclude(host.output(), new URL(Redacted.value(url)).password, "no password in the logs")
      const health = yield* Effect.promise(() => fetch(`${host.baseUrl}/healthz`))
      assert.strictEqual(health.status, 200)
      const ready = yield* Effect.promise(() => fetch(`${host.baseUrl}/readyz`))
      assert.strictEqual(ready.status, 200)

      host.signal("SIGTERM")
      const exit = yield* Effect.promise(() => host.exited)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, host.output())
    }), { timeout: 90_000 })

  it.live("warns at start that --database-url on the command line shows in ps, without logging the URL", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      const host = yield* scopedExactly({ PORT: String(port), LOG_FORMAT: "json" }, ["--database-url", Redacted.value(url)])
      const warnings = host.output().split("\n").filter((line) => line.includes("shows in `ps`"))
      assert.strictEqual(warnings.length, 1, host.output())
      const entry = JSON.parse(warnings[0]!) as { level: string; message: string }
      assert.strictEqual(entry.level, "WARN")
      assert.include(entry.message, "DATABASE_URL_FILE")
      assert.notInclude(host.output(), new URL(Redacted.value(url)).password)
      assert.strictEqual((yield* Effect.promise(() => fetch(`${host.baseUrl}/readyz`))).status, 200)
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0, host.output())
    }), { timeout: 90_000 })

  it.live("reads the database URL from DATABASE_URL_FILE, with no warning", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      const file = path.join(yield* tempDir("sector-host-url-"), "database-url")
      yield* Effect.promise(() => fs.writeFile(file, `${Redacted.value(url)}\n`))
      const host = yield* scopedExactly({ PORT: String(port), LOG_FORMAT: "json", DATABASE_URL_FILE: file })
      assert.notInclude(host.output(), "shows in `ps`")
      assert.notInclude(host.output(), new URL(Redacted.value(url)).password)
      assert.strictEqual((yield* Effect.promise(() => fetch(`${host.baseUrl}/readyz`))).status, 200)
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0, host.output())
    }).pipe(Effect.scoped), { timeout: 90_000 })

  it.live("starts an embedded PostgreSQL in DATA_DIR when DATABASE_URL is unset, and stops it on SIGINT", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("sector-host-e2e-")
      const dataDir = path.join(dir, "pg")
      const port = yield* Port.free
      const host = yield* scopedExactly({ DATA_DIR: dataDir, PORT: String(port) })
      assert.include(host.output(), `embedded PostgreSQL`)
      assert.include(host.output(), dataDir)
      const postmaster = yield* Effect.promise(() => fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8"))
      const pgPid = Number(postmaster.split("\n")[0])
      assert.isTrue(isAlive(pgPid))
      const ready = yield* Effect.promise(() => fetch(`${host.baseUrl}/readyz`))
      assert.strictEqual(ready.status, 200)

      host.signal("SIGINT")
      host.signal("SIGINT") // the terminal and npm both deliver Ctrl-C: counted once
      const exit = yield* Effect.promise(() => host.exited)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, host.output())
      assert.isFalse(isAlive(pgPid), "no stray postgres process")
    }), { timeout: 90_000 })

  it.live("exits non-zero with one readable line for a bad setting", () =>
    Effect.gen(function*() {
      const { code, output } = yield* Effect.promise(() => runToExit({ PORT: "http", LOG_FORMAT: "json" }))
      assert.strictEqual(code, 1)
      const lines = output.trim().split("\n")
      assert.strictEqual(lines.length, 1, output)
      assert.include(lines[0], "invalid configuration: PORT")
    }), { timeout: 60_000 })

  it.live("exits non-zero with one readable line when the database cannot be reached", () =>
    Effect.gen(function*() {
      const port = yield* Port.free
      const { code, output } = yield* Effect.promise(() =>
        runToExit({ DATABASE_URL: `postgres://u:p@127.0.0.1:${port}/db`, PORT: String(port), LOG_FORMAT: "json" })
      )
      assert.strictEqual(code, 1)
      const lines = output.trim().split("\n")
      assert.strictEqual(lines.length, 1, output)
      const entry = JSON.parse(lines[0]!) as { message: string; level: string }
      assert.strictEqual(entry.level, "ERROR")
      assert.include(entry.message, "cannot use the database")
      assert.include(entry.message, "ECONNREFUSED")
    }), { timeout: 60_000 })

  it.live("after a SIGKILL, the next start reclaims its orphaned embedded PostgreSQL and keeps the data", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("sector-host-orphan-")
      const dataDir = path.join(dir, "pg")
      const env = { DATA_DIR: dataDir, PORT: String(yield* Port.free) }
      const first = yield* scopedExactly(env)
      const posted = yield* Effect.promise(() =>
        call(first.baseUrl, "POST", "/sectors/9/ops?ack=durable", { ops: [{ type: "set", entity: 1, component: "a", data: { v: 1 } }] })
      )
      assert.strictEqual(posted.status, 200)
      const pgPid = Number((yield* Effect.promise(() => fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8"))).split("\n")[0])
      first.signal("SIGKILL")
      yield* Effect.promise(() => first.exited)
      assert.isTrue(isAlive(pgPid), "the server outlives a SIGKILLed host")

      const second = yield* scopedExactly(env)
      assert.isFalse(isAlive(pgPid), "the orphan was stopped")
      const entity = yield* Effect.promise(() => call(second.baseUrl, "GET", "/sectors/9/entities/1"))
      assert.deepStrictEqual(entity.body.components, { a: { v: 1 } })
      second.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => second.exited)).code, 0)
    }), { timeout: 120_000 })
})
