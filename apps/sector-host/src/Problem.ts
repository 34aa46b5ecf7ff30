/**
 * Error responses of the HTTP API: every one is RFC 9457 problem details (`application/problem+json`) with `type`,
 * `title`, `status` and `detail`, and this module is the one table saying which status each failure gets:
 *
 * | failure                                            | status | extra                                   |
 * |----------------------------------------------------|--------|-----------------------------------------|
 * | `InvalidOp`, a malformed request, malformed JSON   | 400    | `errors: [{index?, field, message}]`    |
 * | no or a wrong bearer token (when `AUTH_TOKEN` is set) | 401  | `WWW-Authenticate: Bearer`              |
 * | no such entity, unknown route                      | 404    |                                         |
 * | a POST body not declared `application/json`       | 415    |                                         |
 * | on a loopback bind, a `Host` naming another host   | 421    |                                         |
 * | `GET /ingest` that is not a WebSocket upgrade      | 426    | `Upgrade: websocket`                    |
 * | known path, wrong method                           | 405    | `Allow`                                 |
 * | request not received in time (Node's parser)       | 408    |                                         |
 * | body, nesting, op count or one op's `data` too big | 413    | `errors` naming the field (and op)      |
 * | headers too large (Node's parser)                  | 431    |                                         |
 * | `MailboxFull`                                      | 429    | `Retry-After`                           |
 * | `SinkUnavailable`, `ShuttingDown`, `SectorFenced`  | 503    | `Retry-After` (`instance`: the first)   |
 * | `SectorUnreachable` (its owner did not answer)     | 503    | `Retry-After`, `sector`                 |
 * | `DurableTimeout` (the ops are still accepted)      | 504    | `firstSeq`, `lastSeq`, `persistedSeq`   |
 * | a flush not done within `durableTimeout`           | 504    |                                         |
 * | anything unexpected (a defect)                     | 500    | `instance`                              |
 *
 * `Retry-After` is whole seconds, rounded up, at least 1. Problem `type`s are URNs (`urn:sectors:problem:…`): stable
 * names a client can switch on, not documents to fetch; the purely HTTP ones (404, 405, 500) use `about:blank`.
 *
 * A `detail` says what the client needs, never the cause's own words (a driver's address and errno, PostgreSQL's
 * roles, relations, SQL): where the cause matters to the operator (`SinkUnavailable`, a defect) it is logged under a
 * fresh `urn:uuid:…` that the problem carries as `instance` (`incident`).
 */
import type { Errors } from "@sectors/core"
import { Data, Effect } from "effect"
import { randomUUID } from "node:crypto"
import { absurd } from "effect/Function"
import { HttpServerError, HttpServerResponse, ProblemDetails } from "effect/http"
import type { SectorUnreachable } from "./Cluster.ts"

/** One thing wrong with a request: an op (`index`) and its field, or a part of the request (`sector`, `ack`, `ops`). */
export type Issue = Errors.OpIssue

/**
 * A failure with its HTTP answer. Handlers fail with it (`return yield* Problem.invalid(issues)`); `toResponse`
 * renders it.
 */
export class Problem extends Data.TaggedError("Problem")<{
  readonly status: number
  readonly type: string
  readonly title: string
  readonly detail: string
  /** What exactly is wrong, for 400 and 413. */
  readonly errors?: ReadonlyArray<Issue> | undefined
  /** Extension members of the body (`firstSeq`, `phase`, …). */
  readonly extensions?: Readonly<Record<string, unknown>> | undefined
  /** Response headers (`Retry-After`, `Allow`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The incident's id (`urn:uuid:…`) when the cause was logged rather than told: the log line carries it too. */
  readonly instance?: string | undefined
}> {}

/** The errors of `@sectors/core` a handler can meet, and the server's own. */
export type KnownError =
  | Errors.InvalidOp
  | Errors.MailboxFull
  | Errors.SinkUnavailable
  | Errors.ShuttingDown
  | Errors.DurableTimeout
  | Errors.SectorFenced
  | Errors.ResidencyFull
  | Errors.BacklogFull
  | Errors.BufferFull
  | Errors.IdempotencyMismatch
  | SectorUnreachable
  | HttpServerError.HttpServerError

const urn = (name: string) => `urn:sectors:problem:${name}`

/** `Retry-After` for a wait in milliseconds: whole seconds, rounded up, at least 1. */
export const retryAfterSeconds = (millis: number): number =>
  Number.isFinite(millis) ? Math.max(1, Math.ceil(millis / 1000)) : 1

const retryAfter = (millis: number) => ({ "retry-after": String(retryAfterSeconds(millis)) })

/** `ops[2].entity: …; sector: …` — the issues in one line, for `detail`. */
export const describe = (issues: ReadonlyArray<Issue>): string =>
  issues.map((issue) => {
    const where = [issue.index === undefined ? undefined : `ops[${issue.index}]`, issue.field || undefined]
      .filter((part) => part !== undefined).join(".")
    return where === "" ? issue.message : `${where}: ${issue.message}`
  }).join("; ")

/** A refusal of a whole request that lists what is wrong with it in `errors`. */
const refusal = (status: 400 | 413, name: string, title: string) => (issues: ReadonlyArray<Issue>): Problem =>
  new Problem({ status, type: urn(name), title, detail: `nothing was applied: ${describe(issues)}`, errors: issues })

/** 400: the request is malformed; nothing was applied. */
export const invalid = refusal(400, "invalid-request", "Invalid request")

/** 413: the request, its ops or one op's data is over a limit; nothing was applied. */
export const tooLarge = refusal(413, "too-large", "Request too large")

/**
 * A request Node's HTTP parser refused before any route saw it, by the parser's error code: the statuses Node itself
 * would answer (431 headers too large, 413 chunk extensions too large, 408 timed out), 400 for the rest.
 */
export const fromParserError = (code: string | undefined): Problem => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return new Problem({
        status: 431,
        type: urn("headers-too-large"),
        title: "Request Header Fields Too Large",
        detail: "the request's headers are larger than the server accepts; nothing was applied"
      })
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return tooLarge([{ field: "body", message: "has chunk extensions larger than the server accepts" }])
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new Problem({
        status: 408,
        type: urn("request-timeout"),
        title: "Request Timeout",
        detail: "the request did not arrive in time; nothing was applied"
      })
    default:
      return invalid([{ field: "request", message: `is not valid HTTP/1.1 (${code ?? "parse error"})` }])
  }
}

/**
 * 401: the route needs `Authorization: Bearer <token>` and the request has none, another scheme, or a token the host
 * does not know. One answer for all of them, so a client learns nothing about which tokens exist.
 */
export const unauthorized: Problem = new Problem({
  status: 401,
  type: urn("unauthorized"),
  title: "Unauthorized",
  detail: "this route needs an Authorization: Bearer <token> header with a token the host accepts",
  headers: { "www-authenticate": "Bearer" }
})

/** 415: a POST whose body is not declared `application/json`; nothing was read or applied. */
export const unsupportedMediaType = (contentType: string | undefined): Problem =>
  new Problem({
    status: 415,
    type: urn("unsupported-media-type"),
    title: "Unsupported Media Type",
    detail: `a POST body must be sent as Content-Type: application/json, got ${
      contentType === undefined ? "none" : JSON.stringify(contentType.slice(0, 100))
    }; nothing was applied`
  })

/**
 * 421: the host serves on loopback and the `Host` header names another host — what a browser sends after DNS
 * rebinding. The request is not served.
 */
export const misdirected: Problem = new Problem({
  status: 421,
  type: urn("misdirected-request"),
  title: "Misdirected Request",
  detail: "this host serves loopback only: the Host header must name localhost or a loopback address"
})

/** 404 with a reason. */
export const notFound = (detail: string): Problem =>
  new Problem({ status: 404, type: ProblemDetails.blankType, title: "Not Found", detail })

/** 405: the path exists, the method does not; `allow` lists the methods it has. */
export const methodNotAllowed = (method: string, path: string, allow: ReadonlyArray<string>): Problem =>
  new Problem({
    status: 405,
    type: ProblemDetails.blankType,
    title: "Method Not Allowed",
    detail: `${method} is not allowed on ${path} (allowed: ${allow.join(", ")})`,
    headers: { allow: allow.join(", ") }
  })

/** 500: a bug, not the client's fault. */
export const internal: Problem = new Problem({
  status: 500,
  type: ProblemDetails.blankType,
  title: "Internal Server Error",
  detail: "the request failed unexpectedly; it has been logged"
})

/** 504 for a wait of ours that ran out (`what` did not happen within the limit). */
export const timedOut = (detail: string, extensions?: Readonly<Record<string, unknown>>): Problem =>
  new Problem({ status: 504, type: urn("timeout"), title: "Timed out", detail, extensions })

const unavailable = (title: string, name: string, detail: string, retryAfterMillis: number): Problem =>
  new Problem({ status: 503, type: urn(name), title, detail, headers: retryAfter(retryAfterMillis) })

/**
 * 503: `maxDurableWaiters` requests already wait for durability (`ack=durable`, `POST /flush`); this one was refused
 * at once and nothing of it was applied.
 */
export const tooManyWaiters = (maxDurableWaiters: number): Problem =>
  new Problem({
    status: 503,
    type: urn("too-many-waiters"),
    title: "Too many durable waiters",
    detail: `${maxDurableWaiters} requests already wait for durability; nothing was applied, retry later`,
    extensions: { maxDurableWaiters },
    headers: retryAfter(1000)
  })

/** A submission refused for a bound (nothing applied): its sector and the bound, with `Retry-After`. */
const refused = (
  status: number,
  name: string,
  title: string,
  error: { readonly message: string; readonly sectorId: number; readonly retryAfterMillis: number },
  extensions: Readonly<Record<string, unknown>>
): Problem =>
  new Problem({
    status,
    type: urn(name),
    title,
    detail: `${error.message}; nothing was applied, retry later`,
    extensions: { sector: error.sectorId, ...extensions },
    headers: retryAfter(error.retryAfterMillis)
  })

/** The problem an error of the core or of the server stands for. */
export const fromError = (error: KnownError | Problem): Problem => {
  switch (error._tag) {
    case "Problem":
      return error
    case "InvalidOp":
      return invalid(error.issues)
    case "MailboxFull":
      return refused(429, "mailbox-full", "Mailbox full", error, {})
    case "SinkUnavailable":
      // its reason is the driver's or the database's own words (addresses, errnos, roles, relations): logged, not told
      return unavailable(
        "Persistence unavailable",
        "sink-unavailable",
        "the database is unavailable; retry later",
        error.retryAfterMillis
      )
    case "ShuttingDown":
      return unavailable("Shutting down", "shutting-down", `${error.message}; nothing was applied`, 1000)
    case "SectorFenced":
      return unavailable("Sector moved", "sector-fenced", `${error.message}; nothing was applied`, 1000)
    case "BacklogFull":
      return refused(429, "backlog-full", "Sector backlog full", error, { maxPendingKeys: error.maxPendingKeys })
    case "BufferFull":
      return refused(429, "buffer-full", "Buffer full", error, {
        bufferedBytes: error.bufferedBytes,
        budgetBytes: error.budgetBytes
      })
    case "ResidencyFull":
      return refused(503, "residency-full", "Too many active sectors", error, { maxActiveSectors: error.maxActiveSectors })
    case "IdempotencyMismatch":
      return new Problem({
        status: 422,
        type: urn("idempotency-key-reused"),
        title: "Idempotency key reused",
        detail: "this Idempotency-Key was sent before with a different body; nothing was applied",
        extensions: { sector: error.sectorId }
      })
    case "DurableTimeout":
      return timedOut(`${error.message}; the ops stay accepted and will be persisted`, {
        sector: error.sectorId,
        accepted: error.lastSeq - error.firstSeq + 1,
        firstSeq: error.firstSeq,
        lastSeq: error.lastSeq,
        persistedSeq: error.persistedSeq
      })
    case "SectorUnreachable":
      return new Problem({
        status: 503,
        type: urn("sector-unreachable"),
        title: "Sector unreachable",
        detail: `${error.message}; a submission may or may not have been applied, retry later`,
        extensions: { sector: error.sectorId },
        headers: retryAfter(error.retryAfterMillis)
      })
    case "HttpServerError":
      return fromServerError(error)
    default:
      return absurd(error)
  }
}

const fromServerError = (error: HttpServerError.HttpServerError): Problem => {
  const reason = error.reason
  switch (reason._tag) {
    case "RequestParseError":
      return reason.reason === "BodyTooLarge"
        ? tooLarge([{ field: "body", message: reason.description ?? "is larger than allowed" }])
        : invalid([{ field: "body", message: `cannot be read: ${reason.description ?? "malformed request"}` }])
    case "RouteNotFound":
      return notFound(`no route for ${reason.methodAndUrl}${reason.description ? ` (${reason.description})` : ""}`)
    default:
      return internal
  }
}

/** The problem details body of a problem: its extensions, `type`, `title`, `status`, `detail`, `instance`, `errors`. */
export const body = (problem: Problem): ProblemDetails.ProblemDetails => ({
  ...problem.extensions,
  type: problem.type,
  title: problem.title,
  status: problem.status,
  detail: problem.detail,
  ...(problem.instance === undefined ? {} : { instance: problem.instance }),
  ...(problem.errors === undefined ? {} : { errors: problem.errors })
})

/**
 * A problem whose cause is for the operator, not the client: the cause goes to the log (at `level`, with `message`)
 * under a fresh id, `urn:uuid:…`, and the problem carries the same id as `instance` — so a client can quote it and an
 * operator find the line, while the answer names no address, errno, role, relation or SQL.
 */
export const incident = (
  problem: Problem,
  level: "Warn" | "Error",
  message: string,
  cause: unknown
): Effect.Effect<Problem> =>
  Effect.gen(function*() {
    const instance = `urn:uuid:${randomUUID()}`
    const log = level === "Error" ? Effect.logError : Effect.logWarning
    yield* log(`${message} (incident ${instance})`, cause).pipe(Effect.annotateLogs("instance", instance))
    return new Problem({
      status: problem.status,
      type: problem.type,
      title: problem.title,
      detail: problem.detail,
      errors: problem.errors,
      extensions: problem.extensions,
      headers: problem.headers,
      instance
    })
  })

/**
 * The problem for an error of the core, of the server, or a `Problem`; an error whose words are internal
 * (`SinkUnavailable`) is logged as an `incident`. The HTTP API renders it as a response, `/ingest` as a frame's error.
 */
export const of = (error: KnownError | Problem): Effect.Effect<Problem> =>
  error._tag === "SinkUnavailable"
    ? incident(fromError(error), "Warn", `persistence unavailable: ${error.reason}`, error)
    : Effect.succeed(fromError(error))

/** The response for an error of the core, of the server, or a `Problem` (see `of`). */
export const answer = (error: KnownError | Problem): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.map(of(error), toResponse)

/**
 * 426: `GET /ingest` without `Upgrade: websocket`: the route speaks WebSocket only.
 */
export const upgradeRequired: Problem = new Problem({
  status: 426,
  type: urn("upgrade-required"),
  title: "Upgrade Required",
  detail: "/ingest is a WebSocket endpoint: open it with Upgrade: websocket",
  headers: { upgrade: "websocket", connection: "Upgrade" }
})

/** Renders a problem as its `application/problem+json` response. */
export const toResponse = (problem: Problem): HttpServerResponse.HttpServerResponse => {
  const response = ProblemDetails.toResponse(body(problem))
  return problem.headers === undefined ? response : HttpServerResponse.setHeaders(response, problem.headers)
}

/** The response for an error of the core, of the server, or a `Problem`. */
export const respond = (error: KnownError | Problem): HttpServerResponse.HttpServerResponse =>
  toResponse(fromError(error))
