/**
 * A database's time as the server counts it: `pg_stat_database.active_time`, the milliseconds its backends spent
 * running statements. It includes what `pg_stat_statements` leaves out: the commit. A transaction commits (and its
 * WAL is flushed) after the executor is done — after a single statement's execution, and after an explicit
 * `COMMIT`'s too — so statement times alone undercount a write-heavy database several times over (measured: a
 * one-sector group statement executes in 73–86 µs; the database is active 334–813 µs for it, commit included).
 *
 * A backend adds its counters to `pg_stat_database` when it exits (or within 10 s of going idle, at most once a
 * second), so the figure is read only once no backend is connected to the database: the measured clients must be
 * closed first.
 */
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Redacted } from "effect"

/** The name of the database a URL points at. */
export const databaseOf = (url: Redacted.Redacted<string>): string =>
  decodeURIComponent(new URL(Redacted.value(url)).pathname.slice(1))

/**
 * The `active_time` of `database` on the server at `serverUrl`, in ms, once its backends have exited (waits up to
 * `within`; fails if one is still connected then).
 */
export const activeMillis = (serverUrl: Redacted.Redacted<string>, database: string, within = Duration.seconds(20)) =>
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const deadline = Date.now() + Duration.toMillis(within)
    for (;;) {
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = ${database}`
      if (row!.n === 0) break
      if (Date.now() > deadline) {
        return yield* Effect.die(new Error(`${row!.n} backend(s) still connected to ${database} after ${Duration.format(within)}`))
      }
      yield* Effect.sleep(Duration.millis(50))
    }
    yield* sql`SELECT pg_stat_clear_snapshot()`
    const [row] = yield* sql<{ ms: number }>`SELECT active_time::float8 AS ms FROM pg_stat_database WHERE datname = ${database}`
    return row!.ms
  }).pipe(
    Effect.provide(PgClient.layer({ url: serverUrl, maxConnections: 1, applicationName: "bench-database-time" })),
    Effect.scoped
  )
