/**
 * One host per database: a session-level PostgreSQL advisory lock that a host takes before it touches the database
 * and holds on a connection of its own for its whole life. A host that finds it taken does not start
 * (`HostLockHeld`, naming the holder).
 *
 * **Key.** `pg_try_advisory_lock(bigint)` with the fixed key `key` = `0x736563746F727348` (the ASCII bytes of
 * `sectorsH`; `pg_locks` shows it as classid 1936024436, objid 1869771592, objsubid 1). PostgreSQL keeps the
 * one-bigint key space apart from the two-int one (objsubid 1 against 2: a lock of one form never conflicts with a
 * lock of the other, whatever the numbers), and effect's cluster `SqlRunnerStorage` takes its shard locks in the
 * two-int form (`pg_try_advisory_lock(namespace, shard)`), so this lock cannot collide with a shard lock under any
 * table prefix. Advisory locks belong to one database: hosts on different databases of one server never meet.
 *
 * **Modes.** `exclusive` — what a standalone host takes — conflicts with every other holder. `shared`
 * (`pg_try_advisory_lock_shared`) coexists with other shared holders and conflicts with an exclusive one: the
 * runners of a cluster (`RUNNER_PORT`) take it shared, so all the runners of a cluster share a database, a standalone host
 * is refused on a database that clustered hosts use, and a clustered host on one a standalone host uses — the same
 * lock, the same refusal (`HostLockHeld` says how the holder holds it), either way.
 *
 * **Who holds it.** The lock session's `application_name` is the holder's `identity` (the sector-host sets
 * `sector-host pid=4242 http=127.0.0.1:8080 host=box`); a refused host reads it from `pg_locks` joined to
 * `pg_stat_activity`. It lives and dies with the session that holds the lock, so it is never stale; it needs no
 * table (the lock is taken before migrations run); and every role may read it (`application_name` is among the
 * columns `pg_stat_activity` shows for every session). PostgreSQL keeps 63 bytes of it, printable ASCII only: the
 * identity is cut to that here, so what a refused host reads is exactly what the holder set.
 *
 * **Life.** The lock is held on a dedicated connection (not the pool's, whose connections come and go), idle by
 * design (a server-wide `idle_session_timeout` is turned off for it), for which the server is asked for TCP
 * keepalives, so that the session of a machine that vanished without closing its socket ends within about 25 s; a
 * process that dies (even by SIGKILL) has its socket closed by the kernel, and PostgreSQL ends its session, and
 * frees the lock, at once. At start a holder that lets go within `wait` — a crashed predecessor whose session is
 * just ending — is waited for. The session `LISTEN`s on a channel (nothing is ever
 * sent on it): the driver then reports the session's end the moment it happens, without polling. When the session
 * ends while the host runs (the server restarted, an administrator terminated it) the lock is taken again, every
 * `retakeInterval` until it is; if another holder took it in between, `lost` completes with who. Closing the scope
 * unlocks and closes the session, so whoever starts next finds the lock free.
 */
import { PgConnection } from "@effect/sql-pg"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as SqlError from "effect/sql/SqlError"
import * as SqlState from "./SqlState.ts"

/** How the lock is held: `exclusive` by a standalone host, `shared` by the hosts of a cluster. */
export type Mode = "exclusive" | "shared"

/** The advisory lock key (one bigint, the ASCII bytes of `sectorsH`). */
export const key = 0x736563746f727348n

/** The key's high half, `pg_locks.classid`. */
const classid = Number(key >> 32n)
/** The key's low half, `pg_locks.objid`. */
const objid = Number(key & 0xffffffffn)

/** The channel the lock session listens on to learn of its own end; nothing is sent on it. */
export const channel = "sectors_host_lock"

/** The lock is held by another session, so this one may not take it. */
export class HostLockHeld extends Schema.TaggedError<HostLockHeld>()("HostLockHeld", {
  /** The identity of a holder, as it set it (its session's `application_name`). */
  holder: Schema.String,
  /** How that holder holds the lock. */
  mode: Schema.Literals(["exclusive", "shared"]),
  /** How many sessions hold it in a way that conflicts (several only when they hold it shared). */
  holders: Schema.Number
}) {
  override get message(): string {
    const more = this.holders > 1 ? ` and ${this.holders - 1} more` : ""
    return `the database is held ${this.mode === "exclusive" ? "exclusively" : "shared"} by ${this.holder}${more}`
  }
}

/** What to take the lock as, and how. */
export interface Options {
  /** The database. */
  readonly url: Redacted.Redacted<string>
  /** Who takes it, as others will read it (the lock session's `application_name`; cut to 63 printable bytes). */
  readonly identity: string
  /** `exclusive` (a standalone host) or `shared` (a clustered one). Defaults to `exclusive`. */
  readonly mode?: Mode | undefined
  /** How long to keep trying at start while another session holds the lock. Defaults to 2 seconds. */
  readonly wait?: Duration.Input | undefined
  /** Pause between attempts to take the lock again after its session ended. Defaults to 1 second. */
  readonly retakeInterval?: Duration.Input | undefined
  /** Connect timeout of the lock session. Defaults to 5 seconds. */
  readonly connectTimeout?: Duration.Input | undefined
}

/** The defaults of `Options`. */
export const defaults = {
  mode: "exclusive",
  wait: Duration.seconds(2),
  retakeInterval: Duration.seconds(1),
  connectTimeout: Duration.seconds(5)
} as const

/** The held lock. */
export class HostLock extends Context.Service<HostLock, {
  /** This holder's identity, as others read it. */
  readonly identity: string
  /** How it is held. */
  readonly mode: Mode
  /** The backend pid of the session holding it now; none while it is being taken again. */
  readonly session: Effect.Effect<Option.Option<number>>
  /** Completes, with who holds it now, if the lock was lost to another holder; never otherwise. */
  readonly lost: Effect.Effect<HostLockHeld>
}>()("@sectors/sink-pg/HostLock") {}

/** `identity` as PostgreSQL keeps an `application_name`: printable ASCII, at most 63 bytes. */
export const cutIdentity = (identity: string): string => identity.replace(/[^\x20-\x7e]/g, "?").slice(0, 63)

/** A session of ours that holds the lock. */
interface Held {
  readonly scope: Scope.Closeable
  /** Its backend pid. */
  readonly pid: number
  /** Completes when the session ends, with why. */
  readonly ended: Effect.Effect<string>
}

interface Holder {
  readonly pid: number
  readonly mode: Mode
  readonly identity: string
}

const tryLock = (mode: Mode) =>
  `SELECT ${mode === "exclusive" ? "pg_try_advisory_lock" : "pg_try_advisory_lock_shared"}(${key}::bigint) AS taken`

/** The sessions holding the lock in this database, exclusive holders first. */
const holdersSql = `SELECT l.pid, l.mode, coalesce(a.application_name, '') AS identity
  FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.classid = ${classid}::oid AND l.objid = ${objid}::oid
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  ORDER BY l.mode = 'ExclusiveLock' DESC, l.pid`

const pollInterval = Duration.millis(100)

/** Takes the lock (scoped): fails with `HostLockHeld` if another session holds it for longer than `wait`. */
export const make = Effect.fnUntraced(function*(options: Options) {
  const mode = options.mode ?? defaults.mode
  const identity = cutIdentity(options.identity)
  const wait = Duration.toMillis(Duration.fromInputUnsafe(options.wait ?? defaults.wait))
  const retakeInterval = Duration.fromInputUnsafe(options.retakeInterval ?? defaults.retakeInterval)
  const config: PgConnection.Config = {
    url: options.url,
    applicationName: identity,
    connectTimeout: options.connectTimeout ?? defaults.connectTimeout,
    // the client notices a server that vanished; the server a client that did (and then frees the lock)
    keepAlive: Duration.seconds(10),
    startupParameters: {
      tcp_keepalives_idle: "10",
      tcp_keepalives_interval: "5",
      tcp_keepalives_count: "3"
    }
  }

  // every session scope opened, so that closing the layer closes whichever is open, even mid-attempt
  const scopes = new Set<Scope.Closeable>()
  const closeSession = (scope: Scope.Closeable) =>
    Effect.suspend(() => {
      scopes.delete(scope)
      return Scope.close(scope, Exit.void)
    })
  yield* Effect.addFinalizer(() => Effect.forEach([...scopes], closeSession, { discard: true }))

  /** Takes the lock on `connection`; `previous` is the backend pid of our own session that ended (still letting go). */
  const takeOn = Effect.fnUntraced(function*(connection: PgConnection.PgConnection, previous: number | undefined) {
    const deadline = (yield* Clock.currentTimeMillis) + wait
    while (true) {
      const taken = yield* connection.query(tryLock(mode), [], false)
      if (taken.rows[0]?.["taken"] === true) return
      const rows = (yield* connection.query(holdersSql, [], false)).rows
      const holders = rows.map((row): Holder => ({
        pid: Number(row["pid"]),
        mode: row["mode"] === "ExclusiveLock" ? "exclusive" : "shared",
        identity: String(row["identity"])
      }))
      // against a shared request only exclusive holders conflict; our own ended session is not another holder
      const conflicting = holders.filter((h) => (mode === "exclusive" || h.mode === "exclusive") && h.pid !== previous)
      const first = conflicting[0]
      if (first !== undefined && (yield* Clock.currentTimeMillis) >= deadline) {
        return yield* new HostLockHeld({
          holder: first.identity === "" ? `an unnamed session (backend pid ${first.pid})` : first.identity,
          mode: first.mode,
          holders: conflicting.length
        })
      }
      yield* Effect.sleep(pollInterval)
    }
  })

  /** A new session that takes the lock and watches for its own end. */
  const attempt = (previous: number | undefined): Effect.Effect<Held, HostLockHeld | SqlError.SqlError> =>
    Effect.flatMap(
      Effect.uninterruptible(Effect.tap(Scope.make(), (scope) => Effect.sync(() => scopes.add(scope)))),
      (scope) =>
        Effect.gen(function*() {
          const connection = yield* Scope.provide(PgConnection.make(config), scope)
          // the session is idle by design: a server-wide idle_session_timeout must not end it (set only where the
          // server has the setting, PostgreSQL 14 and later)
          yield* connection.query(
            "SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'",
            [],
            false
          )
          yield* takeOn(connection, previous)
          // runs before the connection closes (Terminate): the lock is free once the scope is closed
          yield* Scope.addFinalizer(
            scope,
            connection.query("SELECT pg_advisory_unlock_all()", [], false).pipe(
              Effect.timeout(Duration.seconds(2)),
              Effect.ignore
            )
          )
          const notices = yield* Scope.provide(connection.listen(channel), scope)
          const ended = Effect.forever(Queue.take(notices)).pipe(
            Effect.matchCause({
              onFailure: (cause) => {
                const error = Cause.squash(cause)
                if (!SqlError.isSqlError(error)) return String(error)
                const code = SqlState.codeOf(error)
                return `${SqlState.messageOf(error)}${code === undefined ? "" : ` (${code})`}`
              },
              onSuccess: () => "ended"
            })
          )
          return { scope, pid: connection.processId, ended } satisfies Held
        }).pipe(Effect.onError(() => closeSession(scope)))
    )

  let current: Held | undefined = yield* attempt(undefined)
  const lost = yield* Deferred.make<HostLockHeld>()

  /** Takes the lock again after the session `previous` ended: a new `Held`, or who took it meanwhile. */
  const retake = (previous: number) =>
    Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(retakeInterval)
        const exit = yield* Effect.exit(attempt(previous))
        if (Exit.isSuccess(exit)) return exit.value
        const error = Cause.findErrorOption(exit.cause)
        if (Option.isSome(error) && error.value instanceof HostLockHeld) return error.value
        // anything else (the database cannot be reached, the connection broke): try again
      }
    })

  const keeper = Effect.gen(function*() {
    while (true) {
      const held: Held = current!
      const why = yield* held.ended
      current = undefined
      yield* closeSession(held.scope)
      yield* Effect.logWarning(`host lock: its session (backend pid ${held.pid}) ended (${why}); taking the lock again`)
      const next = yield* retake(held.pid)
      if (next instanceof HostLockHeld) {
        yield* Effect.logError(`host lock: lost; ${next.message}`)
        yield* Deferred.succeed(lost, next)
        return
      }
      current = next
      yield* Effect.logInfo(`host lock: taken again (backend pid ${next.pid})`)
    }
  })
  yield* Effect.forkScoped(keeper)

  return HostLock.of({
    identity,
    mode,
    session: Effect.sync(() => Option.fromUndefinedOr(current?.pid)),
    lost: Deferred.await(lost)
  })
})

/** The lock as a layer: taken when built, released (unlocked, session closed) when the layer is released. */
export const layer = (options: Options): Layer.Layer<HostLock, HostLockHeld | SqlError.SqlError> =>
  Layer.effect(HostLock, make(options))
