import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Option, Redacted, Scope } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { PgEmbedded } from "../src/index.ts"

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Writes a row through @effect/sql-pg and reads it back. */
const roundTrip = (url: Redacted.Redacted<string>, value: string) =>
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    yield* sql`CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text NOT NULL)`
    yield* sql`INSERT INTO notes ${sql.insert({ id: 1, body: value })} ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body`
    return yield* readNote
  }).pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1 })))

const readNote = Effect.gen(function*() {
  const sql = yield* PgClient.PgClient
  const rows = yield* sql<{ body: string }>`SELECT body FROM notes WHERE id = 1`
  return rows[0]?.body
})

/** A scratch directory others can traverse (as the `postgres` user must, when the tests run as root). */
const tempDir = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pg-embedded-test-"))
    await fs.chmod(dir, 0o755)
    return dir
  }),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

describe("PgEmbedded.start", () => {
  it.live("starts a real server on 127.0.0.1 that stores and returns rows, and stops it with the scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* PgEmbedded.start().pipe(Scope.provide(scope))
      assert.strictEqual(server.host, "127.0.0.1")
      assert.isTrue(server.temporary)
      assert.match(Redacted.value(server.url), /^postgres:\/\/postgres:.+@127\.0\.0\.1:\d+\/postgres$/)
      assert.strictEqual(yield* roundTrip(server.url, "hello"), "hello")
      assert.isTrue(isAlive(server.pid))

      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isAlive(server.pid))
      const leftover = yield* Effect.promise(() => fs.access(server.dataDir).then(() => true, () => false))
      assert.isFalse(leftover, "a temporary data directory is removed on stop")
    }))

  it.live("keeps a persistent data directory across restarts", () =>
    Effect.gen(function*() {
      const dir = path.join(yield* tempDir, "cluster")
      const first = yield* Effect.scoped(Effect.flatMap(PgEmbedded.start({ dataDir: dir }), (s) => roundTrip(s.url, "kept")))
      assert.strictEqual(first, "kept")
      const again = yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* PgEmbedded.start({ dataDir: dir })
        assert.isFalse(server.temporary)
        return yield* readNote.pipe(Effect.provide(PgClient.layer({ url: server.url, maxConnections: 1 })))
      }))
      assert.strictEqual(again, "kept")
    }))

  it.live("leaves alone a live process that is not PostgreSQL named by a stale postmaster.pid, and starts", () =>
    Effect.gen(function*() {
      const dir = path.join(yield* tempDir, "cluster")
      yield* Effect.scoped(PgEmbedded.start({ dataDir: dir }))
      // an orphaned `sleep` (re-parented to init, as an orphaned server would be) now holds the pid the file names
      const pid = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<number>((resolve, reject) =>
            execFile("sh", ["-c", "sleep 120 >/dev/null 2>&1 & echo $!"], (error, stdout) =>
              error ? reject(error) : resolve(Number(stdout.trim())))
          )
        ),
        (pid) => Effect.sync(() => isAlive(pid) && process.kill(pid, "SIGKILL"))
      )
      assert.isTrue(isAlive(pid))
      yield* Effect.promise(() => fs.writeFile(path.join(dir, "postmaster.pid"), `${pid}\n${dir}\n`))
      const note = yield* Effect.scoped(
        Effect.flatMap(PgEmbedded.start({ dataDir: dir }), (server) => roundTrip(server.url, "after a stale pid file"))
      )
      assert.strictEqual(note, "after a stale pid file")
      assert.isTrue(isAlive(pid), "the process the stale pid file named is not PostgreSQL and survives")
    }).pipe(Effect.scoped))

  it.live("refuses a non-empty directory that is not a cluster, with one clear error", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.promise(() => fs.writeFile(path.join(dir, "precious.txt"), "do not touch"))
      const error = yield* Effect.flip(Effect.scoped(PgEmbedded.start({ dataDir: dir })))
      assert.strictEqual(error._tag, "PgEmbeddedError")
      assert.strictEqual(error.reason, "DataDirectory")
      assert.include(error.message, dir)
      const content = yield* Effect.promise(() => fs.readFile(path.join(dir, "precious.txt"), "utf8"))
      assert.strictEqual(content, "do not touch")
    }))

  it.live("reports a port that is already taken as PortInUse", () =>
    Effect.gen(function*() {
      const blocker = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<net.Server>((resolve) => {
            const server = net.createServer()
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
      )
      const port = (blocker.address() as net.AddressInfo).port
      const error = yield* Effect.flip(Effect.scoped(PgEmbedded.start({ port })))
      assert.strictEqual(error.reason, "PortInUse")
      assert.include(error.message, String(port))
    }))
})

describe("PgEmbedded.layer", () => {
  it.live("uses DATABASE_URL when it is set and starts nothing", () =>
    Effect.gen(function*() {
      const database = yield* PgEmbedded.DatabaseUrl
      assert.strictEqual(database.source, "external")
      assert.strictEqual(Redacted.value(database.url), "postgres://u:secret@127.0.0.1:1/db")
      assert.notInclude(database.description, "secret")
    }).pipe(
      Effect.provide(PgEmbedded.layer().pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { DATABASE_URL: "postgres://u:secret@127.0.0.1:1/db" } })))
      ))
    ))

  it.live("starts an embedded server when no URL is given", () =>
    Effect.gen(function*() {
      const database = yield* PgEmbedded.DatabaseUrl
      assert.strictEqual(database.source, "embedded")
      assert.strictEqual(yield* roundTrip(database.url, "embedded"), "embedded")
    }).pipe(Effect.provide(PgEmbedded.layerFrom(Option.none()))))
})
