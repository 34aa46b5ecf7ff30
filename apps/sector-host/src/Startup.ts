/**
 * Why the host could not start, as one line a person can act on: which setting is wrong and what it should look
 * like, which database could not be reached and why, which address is taken, which host already holds the
 * database. Used for the single log line the host writes before exiting non-zero.
 */
import { PgEmbedded } from "@sectors/pg-embedded"
import { HostLock } from "@sectors/sink-pg"
import { Config, Predicate, SchemaIssue, String as Str } from "effect"
import { ServeError } from "effect/http/HttpServerError"
import * as Exposure from "./Exposure.ts"
import * as Tls from "./Tls.ts"
import { SqlError } from "effect/sql/SqlError"

/** A setting's variable name (`MAX_WAIT`), as `ConfigProvider.constantCase` looked it up. */
const constantCase = (key: PropertyKey) => Str.configCase(String(key))

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** `PORT: Expected …` for each offending setting. */
const describeConfig = (error: Config.ConfigError): string => {
  const cause = error.cause
  if (cause._tag !== "SchemaError") return `cannot read configuration: ${cause.message}`
  const issues = formatter(cause.issue).issues.map((issue) => {
    const name = issue.path?.map((segment) =>
      constantCase(Predicate.isObject(segment) && "key" in segment ? segment.key as PropertyKey : segment as PropertyKey)
    ).join(".")
    return name ? `${name}: ${issue.message}` : issue.message
  })
  return `invalid configuration: ${issues.join("; ")}`
}

/** The innermost message of a chain of causes (the driver's `connect ECONNREFUSED …`). */
const rootMessage = (error: unknown): string => {
  let current: unknown = error
  for (let depth = 0; depth < 8 && Predicate.hasProperty(current, "cause") && current.cause !== undefined; depth++) {
    current = current.cause
  }
  return Predicate.hasProperty(current, "message") && Predicate.isString(current.message)
    ? current.message
    : String(current)
}

/**
 * The database is held by another host: who (its identity names its pid and HTTP address), and what to do instead.
 * Held shared, it is held by the runners of a cluster (`RUNNER_PORT`), which take it shared.
 */
const describeHeld = (error: HostLock.HostLockHeld): string => {
  const more = error.holders > 1 ? ` and ${error.holders - 1} more` : ""
  return error.mode === "exclusive"
    ? `this database is already used by another standalone host (${error.holder}); a standalone host must be the ` +
      `only one on its database: stop that one first, or, to run several hosts on one database, run them as a ` +
      `cluster (RUNNER_PORT)`
    : `this database is used by the hosts of a cluster (${error.holder}${more}); a standalone host must be the only ` +
      `one on its database: to run beside them, run this host in their cluster (RUNNER_PORT)`
}

/** One line describing a start-up failure. */
export const describe = (error: unknown): string => {
  if (error instanceof Config.ConfigError) return describeConfig(error)
  if (error instanceof Exposure.OpenDoor || error instanceof Exposure.NoRunnerAddress) return Exposure.describe(error)
  if (error instanceof Tls.HalfTls) return Tls.describe(error)
  if (error instanceof HostLock.HostLockHeld) return describeHeld(error)
  if (error instanceof PgEmbedded.PgEmbeddedError) return `cannot start the embedded PostgreSQL: ${error.message}`
  if (error instanceof SqlError) return `cannot use the database: ${rootMessage(error)}`
  if (error instanceof ServeError) return `cannot serve HTTP: ${rootMessage(error)}`
  return rootMessage(error)
}
