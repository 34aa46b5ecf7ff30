/**
 * Configuration of the sector runtime as one documented service, shaped like effect's `ShardingConfig`: every field
 * says its default, `defaults` holds them, `layer(partial)` is for tests and embedding, `layerFromEnv` reads
 * constant-case environment variables (`BATCH_PROFILE`, `MIN_BATCH`, `MAX_WAIT`, …). `config` reads the same keys
 * from whatever `ConfigProvider` is current, so an app can layer CLI flags over the environment.
 */
import * as ByteSize from "effect/ByteSize"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import * as BatchPolicy from "./BatchPolicy.ts"

export class SectorsConfig extends Context.Service<SectorsConfig, {
  /** The named profile the policy started from. Defaults to `balanced`. */
  readonly profile: BatchPolicy.ProfileName
  /** When pending ops become a batch: the profile's numbers with any overrides. Defaults to `balanced`. */
  readonly policy: BatchPolicy.BatchPolicy
  /** Submissions a sector's mailbox holds before `MailboxFull`. Defaults to `1024`. */
  readonly mailboxCapacity: number
  /** `retryAfter` hint given with `MailboxFull`, `BacklogFull` and `BufferFull`. Defaults to 1 second. */
  readonly mailboxRetryAfter: Duration.Duration
  /** How long a submission waits for room in a full mailbox before `MailboxFull`. Defaults to 100 ms. */
  readonly mailboxWait: Duration.Duration
  /**
   * Bytes of accepted, not yet durable data all sectors together may hold (`Batch.cellBytes` estimates); a
   * submission that would pass it is refused at once with `BufferFull`. This, not the circuit breaker, governs
   * admission while the database is away. Defaults to 256 MiB.
   */
  readonly maxBufferedBytes: number
  /** Upper bound for draining and flushing everything when the host stops. Defaults to 10 seconds. */
  readonly shutdownTimeout: Duration.Duration
  /** First delay between retries of a failed batch (exponential, jittered). Defaults to 20 ms. */
  readonly retryBase: Duration.Duration
  /** Longest delay between two retries. Defaults to 1 second. */
  readonly retryMaxDelay: Duration.Duration
  /** How long one batch is retried before the failure counts against the circuit. Defaults to 5 seconds. */
  readonly retryDeadline: Duration.Duration
  /** Consecutive failed persists that open the circuit. Defaults to `3`. */
  readonly circuitFailures: number
  /** How long the circuit stays open the first time; doubles on each consecutive opening. Defaults to 1 second. */
  readonly circuitOpenBase: Duration.Duration
  /** Cap of the open duration, and so of how long a returning database goes unnoticed. Defaults to 5 seconds. */
  readonly circuitOpenMax: Duration.Duration
  /** An idle sector (nothing pending, no callers) is flushed and deactivated after this. Defaults to 5 minutes. */
  readonly passivateAfter: Duration.Duration
  /**
   * Hard cap on resident sectors. A sector that needs a place passivates the least recently used one with nothing
   * unflushed; if every resident sector holds unflushed ops the request fails with `ResidencyFull`. Defaults to
   * `100000`: an idle resident sector costs about 1.5 KiB besides its data (docs/BENCHMARKS.md, "Footprint"), so a
   * full host holds about 150 MiB of runtime plus the sectors' state.
   */
  readonly maxActiveSectors: number
  /**
   * How long a keyed submission (`SubmitOptions.idempotency`, HTTP `Idempotency-Key`) is remembered: a retry within
   * it gets the original answer and applies nothing. Defaults to 10 minutes.
   */
  readonly idempotencyTtl: Duration.Duration
  /**
   * Most idempotency keys the host holds in memory, over all its sectors; the oldest is forgotten first when a new
   * one needs room (about 200 bytes each with a 36-character key). Defaults to `100000`.
   */
  readonly maxIdempotencyKeys: number
  /** First delay before restarting a sector that died of a defect (exponential). Defaults to 100 ms. */
  readonly restartBase: Duration.Duration
  /** Cap of the restart delay. Defaults to 10 seconds. */
  readonly restartMax: Duration.Duration
}>()("@sectors/core/SectorsConfig") {}

/** The values every field defaults to. */
export const defaults: SectorsConfig["Service"] = {
  profile: "balanced",
  policy: BatchPolicy.defaultPolicy,
  mailboxCapacity: 1024,
  mailboxRetryAfter: Duration.seconds(1),
  mailboxWait: Duration.millis(100),
  maxBufferedBytes: 256 * 1024 * 1024,
  shutdownTimeout: Duration.seconds(10),
  retryBase: Duration.millis(20),
  retryMaxDelay: Duration.seconds(1),
  retryDeadline: Duration.seconds(5),
  circuitFailures: 3,
  circuitOpenBase: Duration.seconds(1),
  circuitOpenMax: Duration.seconds(5),
  passivateAfter: Duration.minutes(5),
  maxActiveSectors: 100_000,
  idempotencyTtl: Duration.minutes(10),
  maxIdempotencyKeys: 100_000,
  restartBase: Duration.millis(100),
  restartMax: Duration.seconds(10)
}

const asDuration = (text: string) => (/^\s*\d+(\.\d+)?\s*$/.test(text) ? `${text.trim()} millis` : text.trim())

/**
 * A duration as written in configuration: `250 millis`, `10 seconds`, `Infinity`, or plain milliseconds (`250`).
 */
export const DurationFromConfig = Schema.String.check(
  Schema.makeFilter((text) =>
    Option.isSome(Duration.fromInput(asDuration(text) as Duration.Input))
      ? undefined
      : `expected a duration such as "250 millis", "10 seconds" or plain milliseconds, got ${JSON.stringify(text)}`
  )
).pipe(
  Schema.decodeTo(
    Schema.DurationFromString,
    SchemaTransformation.transform({ decode: asDuration, encode: (text: string) => text })
  )
)

/** A duration setting read with `DurationFromConfig`, falling back to `fallback`. */
export const duration = (name: string, fallback: Duration.Duration): Config.Config<Duration.Duration> =>
  Config.schema(DurationFromConfig, name).pipe(Config.withDefault(fallback))

/** A byte count as effect's `ByteSize` reads it (`256MiB`, `512 MB`, `1.5GiB`), or plain digits (bytes). */
const byteSizeOf = (text: string): Option.Option<bigint> =>
  /^\s*\d+\s*$/.test(text) ? Option.some(BigInt(text.trim())) : ByteSize.fromString(text)

/** A byte count as written in configuration: `268435456`, `256MiB`, `512 MB`, `1GiB`; at least 1 KiB. */
export const BytesFromConfig = Schema.String.check(
  Schema.makeFilter((text) => {
    const size = byteSizeOf(text)
    if (Option.isNone(size)) {
      return `expected a byte count such as "268435456", "256MiB" or "512 MB", got ${JSON.stringify(text)}`
    }
    return size.value >= 1024n && size.value <= BigInt(Number.MAX_SAFE_INTEGER) ? undefined : "must be at least 1 KiB"
  })
).pipe(
  Schema.decodeTo(
    Schema.Number,
    SchemaTransformation.transform({
      decode: (text: string) => Number(Option.getOrThrow(byteSizeOf(text))),
      encode: (bytes: number) => String(bytes)
    })
  )
)

/** A whole-number setting of at least 1. */
export const positiveInt = (name: string): Config.Config<number> =>
  Config.schema(Schema.NumberFromString.pipe(Schema.decodeTo(
    Schema.Int.check(Schema.isGreaterThanOrEqualTo(1, { message: "must be a whole number of at least 1" }))
  )), name)

const overrides = Config.all({
  minBatch: Config.option(positiveInt("minBatch")),
  maxWait: Config.option(Config.schema(DurationFromConfig, "maxWait")),
  maxBatch: Config.option(positiveInt("maxBatch")),
  maxPendingKeys: Config.option(positiveInt("maxPendingKeys"))
})

/** The policy: a profile (`batchProfile`) with `minBatch`, `maxWait`, `maxBatch`, `maxPendingKeys` overrides. */
const policy = Config.all({
  profile: Config.Literals(BatchPolicy.profileNames, "batchProfile").pipe(Config.withDefault(defaults.profile)),
  overrides
}).pipe(
  Config.mapEffect(({ overrides, profile }) => {
    const base = BatchPolicy.profiles[profile]
    if (Object.values(overrides).every((value: Option.Option<unknown>) => Option.isNone(value))) return Effect.succeed({ profile, policy: base })
    return Schema.decodeUnknownEffect(BatchPolicy.BatchPolicy)({
      minBatch: Option.getOrElse(overrides.minBatch, () => base.minBatch),
      maxWait: Option.getOrElse(overrides.maxWait, () => base.maxWait),
      maxBatch: Option.getOrElse(overrides.maxBatch, () => base.maxBatch),
      maxPendingKeys: Option.getOrElse(overrides.maxPendingKeys, () => base.maxPendingKeys)
    }).pipe(
      Effect.map((policy) => ({ profile, policy })),
      Effect.mapError((error) => new Config.ConfigError(error))
    )
  })
)

/** Every key `config` reads (camelCase; `BATCH_PROFILE`-style in the environment). */
export const keys: ReadonlyArray<string> = [
  "batchProfile",
  "minBatch",
  "maxWait",
  "maxBatch",
  "maxPendingKeys",
  "mailboxCapacity",
  "mailboxRetryAfter",
  "mailboxWait",
  "maxBufferedBytes",
  "shutdownTimeout",
  "retryBase",
  "retryMaxDelay",
  "retryDeadline",
  "circuitFailures",
  "circuitOpenBase",
  "circuitOpenMax",
  "passivateAfter",
  "maxActiveSectors",
  "idempotencyTtl",
  "maxIdempotencyKeys",
  "restartBase",
  "restartMax"
]

/** Reads every field from the current `ConfigProvider` (camelCase keys), falling back to `defaults`. */
export const config: Config.Config<SectorsConfig["Service"]> = Config.all({
  policy,
  mailboxCapacity: positiveInt("mailboxCapacity").pipe(Config.withDefault(defaults.mailboxCapacity)),
  mailboxRetryAfter: duration("mailboxRetryAfter", defaults.mailboxRetryAfter),
  mailboxWait: duration("mailboxWait", defaults.mailboxWait),
  maxBufferedBytes: Config.schema(BytesFromConfig, "maxBufferedBytes").pipe(Config.withDefault(defaults.maxBufferedBytes)),
  shutdownTimeout: duration("shutdownTimeout", defaults.shutdownTimeout),
  retryBase: duration("retryBase", defaults.retryBase),
  retryMaxDelay: duration("retryMaxDelay", defaults.retryMaxDelay),
  retryDeadline: duration("retryDeadline", defaults.retryDeadline),
  circuitFailures: positiveInt("circuitFailures").pipe(Config.withDefault(defaults.circuitFailures)),
  circuitOpenBase: duration("circuitOpenBase", defaults.circuitOpenBase),
  circuitOpenMax: duration("circuitOpenMax", defaults.circuitOpenMax),
  passivateAfter: duration("passivateAfter", defaults.passivateAfter),
  maxActiveSectors: positiveInt("maxActiveSectors").pipe(Config.withDefault(defaults.maxActiveSectors)),
  idempotencyTtl: duration("idempotencyTtl", defaults.idempotencyTtl),
  maxIdempotencyKeys: positiveInt("maxIdempotencyKeys").pipe(Config.withDefault(defaults.maxIdempotencyKeys)),
  restartBase: duration("restartBase", defaults.restartBase),
  restartMax: duration("restartMax", defaults.restartMax)
}).pipe(Config.map(({ policy, ...rest }) => ({ ...rest, profile: policy.profile, policy: policy.policy })))

/**
 * A fixed configuration: `defaults` overlaid with `options`. Without an explicit `policy`, the policy is the
 * `profile`'s.
 */
export const layer = (options?: Partial<SectorsConfig["Service"]>): Layer.Layer<SectorsConfig> =>
  Layer.succeed(SectorsConfig)({
    ...defaults,
    ...options,
    policy: options?.policy ?? BatchPolicy.profiles[options?.profile ?? defaults.profile]
  })

/** The configuration from constant-case environment variables (`BATCH_PROFILE`, `MAX_WAIT`, …). */
export const configFromEnv: Effect.Effect<SectorsConfig["Service"], Config.ConfigError> = config.pipe(
  Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv().pipe(ConfigProvider.constantCase))
)

/** The configuration from the environment, with `options` overriding what it says. */
export const layerFromEnv = (
  options?: Partial<SectorsConfig["Service"]>
): Layer.Layer<SectorsConfig, Config.ConfigError> =>
  Layer.effect(SectorsConfig)(Effect.map(configFromEnv, (config) => ({ ...config, ...options })))
