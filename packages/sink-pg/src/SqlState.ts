/**
 * What a PostgreSQL failure means for a batch: try again (`transient`), blame the data (`rejected`: isolate the
 * poison op and dead-letter it), or stop and alert (`fatal`: neither waiting nor dropping data can fix it — a
 * missing table, bad credentials). Classified by SQLSTATE, because the driver's own `isRetryable` misses some
 * transient ones: 57P01 (admin shutdown, what `pg_terminate_backend` and a server stop send) and 53300 (too many
 * connections) arrive as non-retryable `UnknownError`.
 */
import * as Predicate from "effect/Predicate"
import * as SqlError from "effect/sql/SqlError"

/** The three ways a failed statement can be handled. */
export type Class = "transient" | "rejected" | "fatal"

/** Socket-level failures (Node errno codes) that a reconnect can cure. */
const transientErrnos: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTCONN",
  "EAI_AGAIN"
])

/**
 * Classifies a SQLSTATE (5 characters) or a Node errno (`ECONNRESET`…).
 *
 * - transient: 08 (connection), 40001 (serialization), 40P01 (deadlock), 53 (insufficient resources), 55P03 (lock
 *   not available), 57014 (statement timeout / cancel), 57P01–57P05 (the session ended: server shutting down or
 *   restarting, idle timeout, or its database dropped — whose retry then fails with 3D000), 58 (I/O), and socket
 *   errnos;
 * - rejected: 22 (data exception), 23 (integrity constraint), 54 (program limit exceeded, e.g. a value too large);
 * - fatal: everything else (42 syntax or undefined object, 28 authentication, 3D000 unknown database, XX internal…).
 */
export const classify = (code: string): Class => {
  // errnos by name, not by shape: `EPIPE` has a SQLSTATE's five characters; any other errno (`E…`) ends up fatal
  if (transientErrnos.has(code)) return "transient"
  if (code === "40001" || code === "40P01" || code === "55P03" || code === "57014") return "transient"
  if (code.startsWith("57P")) return "transient"
  switch (code.slice(0, 2)) {
    case "08":
    case "53":
    case "58":
      return "transient"
    case "22":
    case "23":
    case "54":
      return "rejected"
    default:
      return "fatal"
  }
}

/** The SQLSTATE (or errno) carried by a `SqlError`, when the driver reported one. */
export const codeOf = (error: SqlError.SqlError): string | undefined => {
  const cause: unknown = error.reason.cause
  if (Predicate.hasProperty(cause, "code") && Predicate.isString(cause.code)) return cause.code
  return undefined
}

/**
 * What the server (or the socket) said, e.g. `new row for relation "t" violates check constraint "c"`, rather
 * than the driver's generic "Query failed"; the driver's message when there is nothing more specific.
 */
export const messageOf = (error: SqlError.SqlError): string => {
  const cause: unknown = error.reason.cause
  if (Predicate.hasProperty(cause, "message") && Predicate.isString(cause.message) && cause.message.length > 0) {
    return cause.message
  }
  return error.message
}

/**
 * Classifies a `SqlError` by its code; without one, a connection-level reason (the driver's `isRetryable`) is
 * transient and anything else fatal.
 */
export const classifyError = (error: SqlError.SqlError): Class => {
  const code = codeOf(error)
  if (code !== undefined) return classify(code)
  return error.isRetryable ? "transient" : "fatal"
}
