import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Option, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as HostConfig from "../src/HostConfig.ts"
import * as Startup from "../src/Startup.ts"

const fromEnv = (env: Record<string, string>) =>
  HostConfig.config.pipe(
    Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }).pipe(ConfigProvider.constantCase))
  )

describe("HostConfig", () => {
  it.effect("defaults every field when the environment says nothing", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({})
      assert.deepStrictEqual(config, HostConfig.defaults)
      assert.strictEqual(config.port, 8080)
      assert.strictEqual(config.host, "127.0.0.1")
      assert.strictEqual(config.dataDir, ".sectors/pg")
      assert.isTrue(Option.isNone(config.databaseUrl))
    }))

  it.effect("reads constant-case variables", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({
        PORT: "9090",
        HOST: "127.0.0.2",
        DATABASE_URL: "postgres://a:b@127.0.0.1:5/x",
        DATA_DIR: "/tmp/pg",
        SHUTDOWN_TIMEOUT: "3 seconds",
        LOG_FORMAT: "json"
      })
      assert.strictEqual(config.port, 9090)
      assert.strictEqual(config.host, "127.0.0.2")
      assert.strictEqual(Option.map(config.databaseUrl, Redacted.value).pipe(Option.getOrUndefined), "postgres://a:b@127.0.0.1:5/x")
      assert.strictEqual(config.dataDir, "/tmp/pg")
      assert.strictEqual(Duration.toMillis(config.shutdownTimeout), 3000)
      assert.strictEqual(config.logFormat, "json")
    }))

  it.effect("rejects a port that is not a port", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ PORT: "http" }))
      assert.strictEqual(error._tag, "ConfigError")
    }))
})

describe("HostConfig durations", () => {
  it.effect.each([
    ["250", 250],
    ["250 millis", 250],
    ["10 seconds", 10_000],
    ["1.5 seconds", 1_500]
  ] as const)("reads SHUTDOWN_TIMEOUT=%s as %d ms", ([text, millis]) =>
    Effect.gen(function*() {
      const config = yield* fromEnv({ SHUTDOWN_TIMEOUT: text })
      assert.strictEqual(Duration.toMillis(config.shutdownTimeout), millis)
    }))

  it.effect("rejects a duration without a unit it knows", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ SHUTDOWN_TIMEOUT: "soon" }))
      assert.strictEqual(error._tag, "ConfigError")
    }))
})

describe("HostConfig DATABASE_URL_FILE", () => {
  const urlFile = (text: string) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "host-config-"))
        const file = path.join(dir, "database-url")
        fs.writeFileSync(file, text)
        return file
      }),
      (file) => Effect.sync(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
    )

  it.effect("reads the database URL from the file, trimmed and redacted, when DATABASE_URL is unset", () =>
    Effect.gen(function*() {
      const file = yield* urlFile("postgres://u:s3cret@127.0.0.1:5432/db\n")
      const config = yield* fromEnv({ DATABASE_URL_FILE: file })
      assert.isTrue(Option.isSome(config.databaseUrl))
      assert.strictEqual(Redacted.value(Option.getOrThrow(config.databaseUrl)), "postgres://u:s3cret@127.0.0.1:5432/db")
      assert.notInclude(String(Option.getOrThrow(config.databaseUrl)), "s3cret")
    }).pipe(Effect.scoped))

  it.effect("lets DATABASE_URL win over the file", () =>
    Effect.gen(function*() {
      const file = yield* urlFile("postgres://from-file@127.0.0.1/db")
      const config = yield* fromEnv({ DATABASE_URL: "postgres://from-env@127.0.0.1/db", DATABASE_URL_FILE: file })
      assert.strictEqual(Redacted.value(Option.getOrThrow(config.databaseUrl)), "postgres://from-env@127.0.0.1/db")
    }).pipe(Effect.scoped))

  it.effect("refuses a file that cannot be read or is empty, with one line naming the setting and not the contents", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(fromEnv({ DATABASE_URL_FILE: "/nonexistent/database-url" }))
      assert.include(Startup.describe(missing), "DATABASE_URL_FILE")
      assert.include(Startup.describe(missing), "ENOENT")
      const empty = yield* Effect.flip(fromEnv({ DATABASE_URL_FILE: yield* urlFile("  \n") }))
      assert.include(Startup.describe(empty), "DATABASE_URL_FILE")
      assert.include(Startup.describe(empty), "is empty")
    }).pipe(Effect.scoped))
})

describe("HostConfig TLS", () => {
  it.effect("reads TLS_CERT and TLS_KEY as paths of readable files, none by default", () =>
    Effect.gen(function*() {
      assert.isTrue(Option.isNone((yield* fromEnv({})).tlsCert))
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "host-config-tls-"))
      try {
        fs.writeFileSync(path.join(dir, "c.pem"), "cert")
        fs.writeFileSync(path.join(dir, "k.pem"), "key")
        const config = yield* fromEnv({ TLS_CERT: path.join(dir, "c.pem"), TLS_KEY: path.join(dir, "k.pem") })
        assert.deepStrictEqual(
          [Option.getOrThrow(config.tlsCert), Option.getOrThrow(config.tlsKey)],
          [path.join(dir, "c.pem"), path.join(dir, "k.pem")]
        )
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect.each(["TLS_CERT", "TLS_KEY"])("refuses an unreadable %s with one line naming it", (name) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ [name]: "/nonexistent/x.pem" }))
      assert.include(Startup.describe(error), name)
      assert.include(Startup.describe(error), "ENOENT")
    }))
})

/** The server limits of a configuration, durations in milliseconds. */
const limitsOf = (config: HostConfig.HostConfig["Service"]) => [
  Duration.toMillis(config.headersTimeout),
  Duration.toMillis(config.requestTimeout),
  Duration.toMillis(config.keepAliveTimeout),
  config.maxConnections,
  config.maxDurableWaiters,
  config.maxInflightFrames,
  config.maxStatusSubscribers
]

describe("HostConfig server limits", () => {
  it.effect("defaults the timeouts, the connection cap, the durable waiters, the in-flight frames and the status subscribers to documented values", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({})
      assert.deepStrictEqual(
        limitsOf(config),
        [60_000, 300_000, 5000, 10_000, 10_000, 1024, 16]
      )
    }))

  it.effect("reads HEADERS_TIMEOUT, REQUEST_TIMEOUT, KEEP_ALIVE_TIMEOUT, MAX_CONNECTIONS, MAX_DURABLE_WAITERS, MAX_INFLIGHT_FRAMES and MAX_STATUS_SUBSCRIBERS", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({
        HEADERS_TIMEOUT: "10 seconds",
        REQUEST_TIMEOUT: "30 seconds",
        KEEP_ALIVE_TIMEOUT: "500",
        MAX_CONNECTIONS: "2000",
        MAX_DURABLE_WAITERS: "64",
        MAX_INFLIGHT_FRAMES: "16",
        MAX_STATUS_SUBSCRIBERS: "3"
      })
      assert.deepStrictEqual(
        limitsOf(config),
        [10_000, 30_000, 500, 2000, 64, 16, 3]
      )
    }))

  it.effect.each([
    ["MAX_CONNECTIONS", "0"],
    ["MAX_DURABLE_WAITERS", "-1"],
    ["MAX_DURABLE_WAITERS", "many"],
    ["MAX_INFLIGHT_FRAMES", "0"],
    ["MAX_STATUS_SUBSCRIBERS", "0"],
    ["HEADERS_TIMEOUT", "soon"]
  ] as const)("refuses %s=%s with one line naming it", ([name, value]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ [name]: value }))
      assert.include(Startup.describe(error), name)
    }))
})

describe("HostConfig tokens", () => {
  it.effect("reads AUTH_TOKEN as one or several comma-separated tokens, kept redacted", () =>
    Effect.gen(function*() {
      const one = yield* fromEnv({ AUTH_TOKEN: "s3cret-token" })
      assert.deepStrictEqual(one.authToken.map(Redacted.value), ["s3cret-token"])
      assert.notInclude(String(one.authToken[0]), "s3cret")
      const several = yield* fromEnv({ AUTH_TOKEN: " old-token , new-token " })
      assert.deepStrictEqual(several.authToken.map(Redacted.value), ["old-token", "new-token"])
    }))

  it.effect("adds the tokens of AUTH_TOKEN_FILE, one a line or comma-separated", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sector-host-token-"))
      const file = path.join(dir, "tokens")
      fs.writeFileSync(file, "from-file-1\nfrom-file-2,from-file-3\n")
      const config = yield* fromEnv({ AUTH_TOKEN: "from-env", AUTH_TOKEN_FILE: file })
      fs.rmSync(dir, { recursive: true })
      assert.deepStrictEqual(config.authToken.map(Redacted.value), ["from-env", "from-file-1", "from-file-2", "from-file-3"])
    }))

  it.effect.each([
    ["AUTH_TOKEN", "good-token,has secret-space", "token 2 has a character a bearer token cannot carry"],
    ["AUTH_TOKEN", " , ", "expected one or more tokens"],
    ["AUTH_TOKEN_FILE", "/nonexistent/tokens", "cannot read \"/nonexistent/tokens\": ENOENT"]
  ] as const)("refuses %s=%j saying why, and repeats no token", ([name, value, why]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ [name]: value }))
      assert.strictEqual(error._tag, "ConfigError")
      const line = Startup.describe(error)
      assert.include(line, name)
      assert.include(line, why)
      assert.notInclude(line, "secret")
      assert.notInclude(line, "good-token")
    }))

  it.effect("reads ALLOW_UNAUTHENTICATED as a boolean", () =>
    Effect.gen(function*() {
      assert.isFalse((yield* fromEnv({})).allowUnauthenticated)
      assert.isTrue((yield* fromEnv({ ALLOW_UNAUTHENTICATED: "true" })).allowUnauthenticated)
      assert.strictEqual((yield* Effect.flip(fromEnv({ ALLOW_UNAUTHENTICATED: "maybe" })))._tag, "ConfigError")
    }))
})

describe("HostConfig CORS origins", () => {
  it.effect("reads CORS_ORIGINS as comma-separated origins, none by default", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual((yield* fromEnv({})).corsOrigins, [])
      const config = yield* fromEnv({ CORS_ORIGINS: "https://app.example, http://localhost:3000" })
      assert.deepStrictEqual(config.corsOrigins, ["https://app.example", "http://localhost:3000"])
    }))

  it.effect.each(["https://app.example/", "https://app.example/path", "app.example", "*", "ftp://app.example", ","])(
    "refuses CORS_ORIGINS=%j naming CORS_ORIGINS",
    (value) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(fromEnv({ CORS_ORIGINS: value }))
        assert.include(Startup.describe(error), "CORS_ORIGINS")
      })
  )
})

describe("HostConfig cluster", () => {
  it.effect("is standalone by default, with takeover timings tuned for a move within 10 s", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({})
      assert.isTrue(Option.isNone(config.runnerPort))
      assert.isTrue(Option.isNone(config.runnerHost))
      assert.strictEqual(config.shardsPerGroup, 300)
      assert.strictEqual(Duration.toMillis(config.shardLockExpiration), 6_000)
      assert.strictEqual(Duration.toMillis(config.shardLockRefreshInterval), 2_000)
      assert.strictEqual(Duration.toMillis(config.refreshAssignmentsInterval), 500)
      assert.strictEqual(Duration.toMillis(config.forwardTimeout), 10_000)
    }))

  it.effect("reads RUNNER_PORT, RUNNER_HOST and the cluster timings", () =>
    Effect.gen(function*() {
      const config = yield* fromEnv({
        RUNNER_PORT: "34431",
        RUNNER_HOST: "10.0.0.7",
        SHARDS_PER_GROUP: "64",
        SHARD_LOCK_EXPIRATION: "8 seconds",
        SHARD_LOCK_REFRESH_INTERVAL: "2 seconds",
        REFRESH_ASSIGNMENTS_INTERVAL: "1 second",
        FORWARD_TIMEOUT: "3 seconds"
      })
      assert.deepStrictEqual(config.runnerPort, Option.some(34431))
      assert.deepStrictEqual(config.runnerHost, Option.some("10.0.0.7"))
      assert.strictEqual(config.shardsPerGroup, 64)
      assert.strictEqual(Duration.toMillis(config.shardLockExpiration), 8_000)
      assert.strictEqual(Duration.toMillis(config.shardLockRefreshInterval), 2_000)
      assert.strictEqual(Duration.toMillis(config.refreshAssignmentsInterval), 1_000)
      assert.strictEqual(Duration.toMillis(config.forwardTimeout), 3_000)
    }))

  it.effect.each([
    ["RUNNER_PORT", "http"],
    ["RUNNER_PORT", "70000"],
    ["SHARDS_PER_GROUP", "0"],
    ["SHARD_LOCK_EXPIRATION", "soon"]
  ] as const)("refuses %s=%s with one line naming it", ([name, value]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(fromEnv({ [name]: value }))
      assert.include(Startup.describe(error), name)
    }))
})
