/**
 * `HostLock` against a real PostgreSQL, with several lock sessions in one process: an exclusive holder refuses every
 * other and is named by the refusal; closing its scope frees the lock; shared holders coexist, and shared and
 * exclusive refuse each other both ways; a holder that lets go within `wait` is waited for; a lock whose session is
 * terminated is taken again, or reported `lost` if another session took it in between; a server-wide
 * `idle_session_timeout` does not end the (idle) lock session.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Option, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { HostLock } from "../src/index.ts"
import { database } from "./support.ts"

/** An admin client on the test database, beside its `DatabaseUrl`. */
const admin = Layer.unwrap(PgEmbedded.DatabaseUrl.useSync(({ url }) =>
  PgClient.layer({ url, maxConnections: 2, applicationName: "host-lock-test-admin" })
)).pipe(Layer.provideMerge(database))

/** Takes the lock as `identity` in `scope` (no waiting at start unless asked). */
const take = (scope: Scope.Scope, identity: string, options: Partial<HostLock.Options> = {}) =>
  PgEmbedded.DatabaseUrl.use(({ url }) => Scope.provide(HostLock.make({ url, identity, wait: 0, ...options }), scope))

/** The refusal `effect` failed with. */
const refusal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    assert.isTrue(Exit.isFailure(exit), "the lock was taken")
    const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined
    assert.instanceOf(error, HostLock.HostLockHeld, String(exit))
    return error as HostLock.HostLockHeld
  })

/** The sessions holding the lock: `[application_name, mode]`, by pid. */
const holders = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ application_name: string; mode: string; pid: number }>`
    SELECT a.application_name, l.mode, l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND ((l.classid::bigint << 32) | l.objid::bigint) = ${HostLock.key}
    ORDER BY l.pid`
  return rows
})

/** Waits (up to 10 s) until `check` holds. */
const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      if (yield* check) return
      yield* Effect.sleep(50)
    }
    assert.fail(`not within 10 s: ${what}`)
  })

const terminate = (pid: number) =>
  SqlClient.SqlClient.use((sql) => sql`SELECT pg_terminate_backend(${pid})`)

describe("HostLock", () => {
  it.live("refuses a second exclusive holder and names the first", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const first = yield* take(scope, "host-a pid=1 http=127.0.0.1:1")
      assert.strictEqual(first.mode, "exclusive")
      const refused = yield* refusal(Effect.scoped(Effect.flatMap(Effect.scope, (s) => take(s, "host-b"))))
      assert.deepStrictEqual([refused.holder, refused.mode, refused.holders], ["host-a pid=1 http=127.0.0.1:1", "exclusive", 1])
      assert.include(refused.message, "host-a pid=1 http=127.0.0.1:1")
      assert.deepStrictEqual((yield* holders).map((h) => [h.application_name, h.mode]), [["host-a pid=1 http=127.0.0.1:1", "ExclusiveLock"]])
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(admin)))

  it.live("frees the lock when the holder's scope closes, for the next to take", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* take(scope, "host-a")
      yield* Scope.close(scope, Exit.void)
      // unlocked before the scope closed: not waiting for the backend to notice the closed connection
      assert.deepStrictEqual(yield* holders, [])
      const next = yield* Scope.make()
      const lock = yield* take(next, "host-b")
      assert.deepStrictEqual((yield* holders).map((h) => h.application_name), ["host-b"])
      assert.deepStrictEqual(yield* lock.session, Option.some((yield* holders)[0]!.pid))
      yield* Scope.close(next, Exit.void)
    }).pipe(Effect.provide(admin)))

  it.live("lets shared holders share; shared and exclusive refuse each other both ways", () =>
    Effect.gen(function*() {
      const shared = yield* Scope.make()
      yield* take(shared, "runner-1", { mode: "shared" })
      yield* take(shared, "runner-2", { mode: "shared" })
      assert.deepStrictEqual((yield* holders).map((h) => h.mode), ["ShareLock", "ShareLock"])
      const standalone = yield* refusal(Effect.scoped(Effect.flatMap(Effect.scope, (s) => take(s, "standalone"))))
      assert.strictEqual(standalone.mode, "shared")
      assert.strictEqual(standalone.holders, 2)
      assert.include(["runner-1", "runner-2"], standalone.holder)
      yield* Scope.close(shared, Exit.void)

      const exclusive = yield* Scope.make()
      yield* take(exclusive, "standalone")
      const runner = yield* refusal(Effect.scoped(Effect.flatMap(Effect.scope, (s) => take(s, "runner-3", { mode: "shared" }))))
      assert.deepStrictEqual([runner.holder, runner.mode, runner.holders], ["standalone", "exclusive", 1])
      yield* Scope.close(exclusive, Exit.void)
    }).pipe(Effect.provide(admin)))

  it.live("waits at start for a holder that lets go within `wait`", () =>
    Effect.gen(function*() {
      const first = yield* Scope.make()
      yield* take(first, "leaving")
      const second = yield* Scope.make()
      const taking = yield* Effect.forkChild(take(second, "arriving", { wait: "10 seconds" }))
      yield* Effect.sleep(500)
      assert.isUndefined(taking.pollUnsafe(), "took the lock while it was held")
      yield* Scope.close(first, Exit.void)
      yield* Fiber.join(taking)
      assert.deepStrictEqual((yield* holders).map((h) => h.application_name), ["arriving"])
      yield* Scope.close(second, Exit.void)
    }).pipe(Effect.provide(admin)))

  it.live("takes the lock again when its session is terminated", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const lock = yield* take(scope, "host-a", { retakeInterval: "100 millis" })
      const before = Option.getOrThrow(yield* lock.session)
      yield* terminate(before)
      yield* eventually(
        "a new session holds the lock",
        Effect.map(lock.session, (pid) => Option.isSome(pid) && pid.value !== before)
      )
      const after = Option.getOrThrow(yield* lock.session)
      assert.deepStrictEqual((yield* holders).map((h) => [h.application_name, h.pid]), [["host-a", after]])
      // and again, while it is held by the new session
      yield* terminate(after)
      yield* eventually("a third session holds it", Effect.map(lock.session, (pid) => Option.isSome(pid) && pid.value !== after))
      assert.isUndefined(yield* Effect.map(Effect.option(Effect.timeout(lock.lost, 10)), Option.getOrUndefined))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* holders, [])
    }).pipe(Effect.provide(admin)))

  it.live("reports the lock lost when another holder took it while its session was down", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const lock = yield* take(scope, "host-a", { retakeInterval: "2 seconds" })
      const lost = yield* Deferred.make<HostLock.HostLockHeld>()
      yield* Effect.forkChild(Effect.flatMap(lock.lost, (held) => Deferred.succeed(lost, held)))
      yield* terminate(Option.getOrThrow(yield* lock.session))
      // host-b waits at start for host-a's session to end and takes the lock before host-a tries again
      const other = yield* Scope.make()
      yield* take(other, "host-b", { wait: "1500 millis" })
      const held = yield* Deferred.await(lost).pipe(Effect.timeout("10 seconds"))
      assert.deepStrictEqual([held.holder, held.mode], ["host-b", "exclusive"])
      assert.isTrue(Option.isNone(yield* lock.session))
      assert.deepStrictEqual((yield* holders).map((h) => h.application_name), ["host-b"])
      yield* Scope.close(scope, Exit.void)
      yield* Scope.close(other, Exit.void)
    }).pipe(Effect.provide(admin)))

  it.live("keeps its session through a server-wide idle_session_timeout", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { url } = yield* PgEmbedded.DatabaseUrl
      const name = new URL(Redacted.value(url)).pathname.slice(1)
      yield* sql`ALTER DATABASE ${sql(name)} SET idle_session_timeout = '300ms'`
      const scope = yield* Scope.make()
      const lock = yield* take(scope, "host-a").pipe(
        Effect.ensuring(Effect.ignore(sql`ALTER DATABASE ${sql(name)} RESET idle_session_timeout`))
      )
      const pid = yield* lock.session
      yield* Effect.sleep(1_000)
      assert.deepStrictEqual(yield* lock.session, pid, "the lock session was ended and replaced")
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(admin)))

  it.effect("keeps an identity to what PostgreSQL stores as an application_name", () =>
    Effect.sync(() => {
      assert.strictEqual(HostLock.cutIdentity("sector-host pid=1 http=127.0.0.1:8080"), "sector-host pid=1 http=127.0.0.1:8080")
      assert.strictEqual(HostLock.cutIdentity("x".repeat(80)).length, 63)
      assert.strictEqual(HostLock.cutIdentity("höst"), "h?st")
    }))
})
