/**
 * The host's configuration as one documented service, shaped like effect's `ShardingConfig`: every field has a
 * default in `defaults`, `layer(partial)` is for tests, `config` is the descriptor — `main.ts` reads it through
 * `CommandLine` (flags over constant-case environment variables), `layerFromEnv` from the environment alone
 * (`PORT`, `HOST`, `DATABASE_URL`, …). Nothing else in the app reads the environment. Secrets (`DATABASE_URL`,
 * `AUTH_TOKEN`, and what `DATABASE_URL_FILE` and `AUTH_TOKEN_FILE` hold) are `Redacted`: they never show in a log line or an error, and a bad one is described without its value.
 */
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import { SectorsConfig } from "@sectors/core"
import { Workload } from "@sectors/workloads"

/** How log lines are written. `auto` is JSON lines when stderr is not a terminal, human-readable when it is. */
export type LogFormat = "json" | "pretty" | "auto"

export class HostConfig extends Context.Service<HostConfig, {
  /** TCP port of the HTTP API. Defaults to `8080`. */
  readonly port: number
  /** Address the HTTP API binds to. Defaults to `127.0.0.1`. */
  readonly host: string
  /**
   * External PostgreSQL: `DATABASE_URL`, else the contents of `databaseUrlFile`. Defaults to none: an embedded server
   * is started in `dataDir`.
   */
  readonly databaseUrl: Option.Option<Redacted.Redacted<string>>
  /**
   * A file holding the URL of the external PostgreSQL (blanks around it ignored), read once at start, used when
   * `DATABASE_URL` is unset: a secret in a file shows neither in `ps` nor in the environment. Defaults to none.
   */
  readonly databaseUrlFile: Option.Option<string>
  /** Data directory of the embedded PostgreSQL, relative to the working directory. Defaults to `.sectors/pg`. */
  readonly dataDir: string
  /** Minimum level of log lines. Defaults to `Info`. */
  readonly logLevel: LogLevel.LogLevel
  /** Log line format. Defaults to `auto`. */
  readonly logFormat: LogFormat
  /** Upper bound for draining and flushing everything on shutdown. Defaults to 10 seconds. */
  readonly shutdownTimeout: Duration.Duration
  /** Largest request body accepted; larger ones get 413. Defaults to 1 MiB (`1048576`). */
  readonly maxBodyBytes: number
  /** Most ops one request may carry; more get 413. Defaults to `1000`. */
  readonly maxOpsPerRequest: number
  /** Largest `data` of one op, as JSON bytes; larger ones get 413. Defaults to 64 KiB (`65536`). */
  readonly maxDataBytes: number
  /** How long `ack=durable` and `POST /flush` wait before answering 504 (ops stay accepted). Defaults to 30 seconds. */
  readonly durableTimeout: Duration.Duration
  /**
   * Most `ack=durable` submissions and `POST /flush` requests waiting at once; one more gets 503 `too-many-waiters`
   * with `Retry-After` at once, and nothing of it is applied. Defaults to `10000`.
   */
  readonly maxDurableWaiters: number
  /**
   * Most frames of one `/ingest` WebSocket connection read and not yet answered; past it the server stops reading
   * that connection (its socket is paused once a small buffer fills, and TCP pushes back on the client) until answers
   * free places. Defaults to `1024`.
   */
  readonly maxInflightFrames: number
  /**
   * Most status-page streams (`GET /status/stream`) open at once; one more gets 503 `too-many-subscribers` with
   * `Retry-After`. Defaults to `16`.
   */
  readonly maxStatusSubscribers: number
  /** How long a client may take to send a request's headers before the server answers 408. Defaults to 60 seconds. */
  readonly headersTimeout: Duration.Duration
  /** How long a client may take to send a whole request (headers and body). Defaults to 5 minutes. */
  readonly requestTimeout: Duration.Duration
  /** How long an idle keep-alive connection stays open after an answer. Defaults to 5 seconds. */
  readonly keepAliveTimeout: Duration.Duration
  /** Most connections open at once; more are closed as they arrive. Defaults to `10000`. */
  readonly maxConnections: number
  /**
   * PEM file of the certificate (chain) to serve HTTPS with, on the same port; needs `tlsKey`. Defaults to none:
   * plain HTTP.
   */
  readonly tlsCert: Option.Option<string>
  /** PEM file of the private key of `tlsCert`; needs `tlsCert`. Defaults to none. */
  readonly tlsKey: Option.Option<string>
  /** Drive the host in-process with a field-report workload. Defaults to none. */
  readonly simulate: Option.Option<Workload.Scenario>
  /**
   * Bearer tokens every route but `/healthz` and `/readyz` requires: `AUTH_TOKEN` holds one or several separated by
   * commas (several so a token can be rotated), each token68 (letters, digits, `-._~+/`, trailing `=`). Defaults to
   * none: no authentication.
   */
  readonly authToken: ReadonlyArray<Redacted.Redacted<string>>
  /** A file holding more tokens, separated by commas or line breaks; read once at start. Defaults to none. */
  readonly authTokenFile: Option.Option<string>
  /** Serve on a non-loopback `host` without a token, on purpose (a warning at start). Defaults to `false`. */
  readonly allowUnauthenticated: boolean
  /**
   * Origins (`https://app.example:8443`, comma-separated) whose browser pages may call the API: their preflights are
   * answered and their answers carry `Access-Control-Allow-Origin`. Defaults to none: no CORS headers at all.
   */
  readonly corsOrigins: ReadonlyArray<string>
  /**
   * TCP port of the cluster transport: set, the host runs as a runner of the cluster formed by every runner on the same
   * database (`Cluster`), and answers for every sector, forwarding to the owner. Defaults to none: standalone.
   */
  readonly runnerPort: Option.Option<number>
  /**
   * Address the runner listens on and its peers reach it at (so not `0.0.0.0`: a routable address of this machine).
   * Defaults to none: `host`.
   */
  readonly runnerHost: Option.Option<string>
  /**
   * Shards of the cluster; **must be the same on every runner** of a database (a sector's shard is its id's hash
   * modulo this). Defaults to `300`.
   */
  readonly shardsPerGroup: number
  /**
   * How long a runner's shard locks and heartbeat outlive it: a runner that stopped (SIGKILL, a frozen process, a cut
   * network) loses its shards after this, and the survivors take them over. Defaults to 6 seconds.
   */
  readonly shardLockExpiration: Duration.Duration
  /**
   * How often a runner refreshes its shard locks and heartbeat (at most a third of the expiration). It is also the
   * time effect's cluster allows each lock operation (`min(this, expiration / 3)`): 1 s proved too short on a loaded
   * 2-core machine (shards left unowned up to ~15 s while they moved), 2 s did not. Defaults to 2 seconds.
   */
  readonly shardLockRefreshInterval: Duration.Duration
  /** How often a runner reads the runners of the cluster and recomputes who owns which shard. Defaults to 500 ms. */
  readonly refreshAssignmentsInterval: Duration.Duration
  /**
   * How long a forwarded request may take beyond the waits it carries (`MAILBOX_WAIT`, `DURABLE_TIMEOUT`): the time to
   * reach the owner, also while its shard moves. Past it the answer is 503 `sector-unreachable` with `Retry-After`.
   * Defaults to 10 seconds.
   */
  readonly forwardTimeout: Duration.Duration
}>()("sector-host/HostConfig") {}

/** The values every field defaults to. */
export const defaults: HostConfig["Service"] = {
  port: 8080,
  host: "127.0.0.1",
  databaseUrl: Option.none(),
  databaseUrlFile: Option.none(),
  dataDir: ".sectors/pg",
  logLevel: "Info",
  logFormat: "auto",
  shutdownTimeout: Duration.seconds(10),
  maxBodyBytes: 1_048_576,
  maxOpsPerRequest: 1000,
  maxDataBytes: 65_536,
  durableTimeout: Duration.seconds(30),
  maxDurableWaiters: 10_000,
  maxInflightFrames: 1024,
  maxStatusSubscribers: 16,
  headersTimeout: Duration.seconds(60),
  requestTimeout: Duration.minutes(5),
  keepAliveTimeout: Duration.seconds(5),
  maxConnections: 10_000,
  tlsCert: Option.none(),
  tlsKey: Option.none(),
  simulate: Option.none(),
  authToken: [],
  authTokenFile: Option.none(),
  allowUnauthenticated: false,
  corsOrigins: [],
  runnerPort: Option.none(),
  runnerHost: Option.none(),
  shardsPerGroup: 300,
  shardLockExpiration: Duration.seconds(6),
  shardLockRefreshInterval: Duration.seconds(2),
  refreshAssignmentsInterval: Duration.millis(500),
  forwardTimeout: Duration.seconds(10)
}

/** One bearer token as RFC 6750 allows it on the wire (token68). */
const token68 = /^[A-Za-z0-9\-._~+/]+=*$/

/** The tokens of a list separated by commas (and line breaks, in a file), blanks around them ignored. */
const splitTokens = (text: string): Array<string> => text.split(/[,\r\n]+/).map((token) => token.trim()).filter((token) => token !== "")

/** Why `text` is not a list of tokens, without repeating any of it (it is a secret), or `undefined` if it is one. */
const tokenListIssue = (text: string): string | undefined => {
  const tokens = splitTokens(text)
  if (tokens.length === 0) return "expected one or more tokens separated by commas, got none"
  const bad = tokens.findIndex((token) => !token68.test(token))
  return bad === -1
    ? undefined
    : `token ${bad + 1} has a character a bearer token cannot carry (allowed: letters, digits, -._~+/ and trailing =)`
}

const TokenList = Schema.String.check(Schema.makeFilter((text) => tokenListIssue(text) ?? true))

const readTokenFile = (path: string): string => fs.readFileSync(path, "utf8")

/** A readable file holding a list of tokens; its contents are checked at start, never echoed. */
const TokenFile = Schema.String.check(Schema.makeFilter((path) => {
  let text: string
  try {
    text = readTokenFile(path)
  } catch (error) {
    return `cannot read ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`
  }
  const issue = tokenListIssue(text)
  return issue === undefined ? true : `${JSON.stringify(path)}: ${issue}`
}))

/** A readable file holding a database URL; checked at start, its contents never echoed. */
const UrlFile = Schema.String.check(Schema.makeFilter((path) => {
  let text: string
  try {
    text = fs.readFileSync(path, "utf8")
  } catch (error) {
    return `cannot read ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`
  }
  return text.trim() === "" ? `${JSON.stringify(path)} is empty: expected a database URL` : true
}))

/** A readable file (a PEM certificate or key); checked at start, its contents never echoed. */
const ReadableFile = Schema.String.check(Schema.makeFilter((path) => {
  try {
    fs.accessSync(path, fs.constants.R_OK)
    return true
  } catch (error) {
    return `cannot read ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`
  }
}))

const splitOrigins = (text: string): Array<string> => text.split(",").map((origin) => origin.trim()).filter((o) => o !== "")

/** Whether `text` is an origin as a browser sends it: scheme, host and port if not the default, nothing more. */
const isOrigin = (text: string): boolean => {
  try {
    const url = new URL(text)
    return (url.protocol === "http:" || url.protocol === "https:") && url.origin === text
  } catch {
    return false
  }
}

const OriginList = Schema.String.check(Schema.makeFilter((text) => {
  const origins = splitOrigins(text)
  const bad = origins.find((origin) => !isOrigin(origin))
  return origins.length === 0
    ? "expected one or more origins separated by commas, got none"
    : bad === undefined
    ? true
    : `${JSON.stringify(bad)} is not an origin (like "https://app.example" or "http://localhost:3000": no path, no trailing slash)`
}))

const asRedacted = (text: string) => splitTokens(text).map((token) => Redacted.make(token))

/** Reads every field, falling back to `defaults`. Keys are camelCase; providers map them (`PORT`, `--port`). */
export const config: Config.Config<HostConfig["Service"]> = Config.all({
  port: Config.Port("port").pipe(Config.withDefault(defaults.port)),
  host: Config.String("host").pipe(Config.withDefault(defaults.host)),
  databaseUrl: Config.option(Config.Redacted("databaseUrl")),
  databaseUrlFile: Config.option(Config.schema(UrlFile, "databaseUrlFile")),
  dataDir: Config.NonEmptyString("dataDir").pipe(Config.withDefault(defaults.dataDir)),
  logLevel: Config.LogLevel("logLevel").pipe(Config.withDefault(defaults.logLevel)),
  logFormat: Config.Literals(["json", "pretty", "auto"], "logFormat").pipe(Config.withDefault(defaults.logFormat)),
  shutdownTimeout: SectorsConfig.duration("shutdownTimeout", defaults.shutdownTimeout),
  maxBodyBytes: SectorsConfig.positiveInt("maxBodyBytes").pipe(Config.withDefault(defaults.maxBodyBytes)),
  maxOpsPerRequest: SectorsConfig.positiveInt("maxOpsPerRequest").pipe(Config.withDefault(defaults.maxOpsPerRequest)),
  maxDataBytes: SectorsConfig.positiveInt("maxDataBytes").pipe(Config.withDefault(defaults.maxDataBytes)),
  durableTimeout: SectorsConfig.duration("durableTimeout", defaults.durableTimeout),
  maxDurableWaiters: SectorsConfig.positiveInt("maxDurableWaiters").pipe(Config.withDefault(defaults.maxDurableWaiters)),
  maxInflightFrames: SectorsConfig.positiveInt("maxInflightFrames").pipe(Config.withDefault(defaults.maxInflightFrames)),
  maxStatusSubscribers: SectorsConfig.positiveInt("maxStatusSubscribers").pipe(
    Config.withDefault(defaults.maxStatusSubscribers)
  ),
  headersTimeout: SectorsConfig.duration("headersTimeout", defaults.headersTimeout),
  requestTimeout: SectorsConfig.duration("requestTimeout", defaults.requestTimeout),
  keepAliveTimeout: SectorsConfig.duration("keepAliveTimeout", defaults.keepAliveTimeout),
  maxConnections: SectorsConfig.positiveInt("maxConnections").pipe(Config.withDefault(defaults.maxConnections)),
  tlsCert: Config.option(Config.schema(ReadableFile, "tlsCert")),
  tlsKey: Config.option(Config.schema(ReadableFile, "tlsKey")),
  simulate: Config.option(Config.Literals(Workload.scenarios, "simulate")),
  authToken: Config.option(Config.schema(TokenList, "authToken")),
  authTokenFile: Config.option(Config.schema(TokenFile, "authTokenFile")),
  allowUnauthenticated: Config.Boolean("allowUnauthenticated").pipe(Config.withDefault(defaults.allowUnauthenticated)),
  corsOrigins: Config.schema(OriginList, "corsOrigins").pipe(Config.map(splitOrigins), Config.withDefault(defaults.corsOrigins)),
  runnerPort: Config.option(Config.Port("runnerPort")),
  runnerHost: Config.option(Config.NonEmptyString("runnerHost")),
  shardsPerGroup: SectorsConfig.positiveInt("shardsPerGroup").pipe(Config.withDefault(defaults.shardsPerGroup)),
  shardLockExpiration: SectorsConfig.duration("shardLockExpiration", defaults.shardLockExpiration),
  shardLockRefreshInterval: SectorsConfig.duration("shardLockRefreshInterval", defaults.shardLockRefreshInterval),
  refreshAssignmentsInterval: SectorsConfig.duration("refreshAssignmentsInterval", defaults.refreshAssignmentsInterval),
  forwardTimeout: SectorsConfig.duration("forwardTimeout", defaults.forwardTimeout)
}).pipe(Config.map(({ authToken, ...rest }) => ({
  ...rest,
  databaseUrl: Option.orElse(
    rest.databaseUrl,
    () => Option.map(rest.databaseUrlFile, (path) => Redacted.make(fs.readFileSync(path, "utf8").trim()))
  ),
  authToken: [
    ...Option.match(authToken, { onNone: () => [], onSome: asRedacted }),
    ...Option.match(rest.authTokenFile, { onNone: () => [], onSome: (path) => asRedacted(readTokenFile(path)) })
  ]
})))

/** Every key `config` reads (camelCase; `PORT`-style in the environment, `--port` on the command line). */
export const keys: ReadonlyArray<string> = Object.keys(defaults)

/** A fixed configuration: `defaults` overlaid with `options`. */
export const layer = (options?: Partial<HostConfig["Service"]>): Layer.Layer<HostConfig> =>
  Layer.succeed(HostConfig)({ ...defaults, ...options })

/** Loads the configuration from constant-case environment variables (`PORT`, `DATABASE_URL`, …). */
export const configFromEnv: Effect.Effect<HostConfig["Service"], Config.ConfigError> = config.pipe(
  Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv().pipe(ConfigProvider.constantCase))
)

/** The configuration from the environment, with `options` overriding what it says. */
export const layerFromEnv = (options?: Partial<HostConfig["Service"]>): Layer.Layer<HostConfig, Config.ConfigError> =>
  Layer.effect(HostConfig)(Effect.map(configFromEnv, (config) => ({ ...config, ...options })))
