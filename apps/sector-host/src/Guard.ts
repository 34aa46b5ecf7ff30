/**
 * What every request passes before any route sees it, in one place (`Http` installs it once, around the router):
 *
 * 1. a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an origin `corsOrigins` lists
 *    is answered here, before authentication, since browsers send preflights without credentials;
 * 2. on a loopback bind, a `Host` header naming anything but a loopback name or address gets 421: a page on
 *    `evil.example` whose name was rebound to 127.0.0.1 reaches the port, but names its own host;
 * 3. with `authToken` set, every path but `/healthz` and `/readyz` needs `Authorization: Bearer <token>` (401
 *    otherwise, one answer whatever was wrong), compared as SHA-256 digests in constant time;
 * 4. a POST that carries a body or a content type must say `application/json` (a `charset` parameter is fine): 415
 *    otherwise, before the body is read — a cross-site form or `text/plain` fetch needs no preflight, a JSON one does;
 * 5. answers to an origin `corsOrigins` lists carry `Access-Control-Allow-Origin` for it; nothing else carries CORS
 *    headers.
 */
import { Effect, Redacted } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpServerResponse } from "effect/http"
import * as crypto from "node:crypto"
import * as Exposure from "./Exposure.ts"
import type { HostConfig } from "./HostConfig.ts"
import * as Problem from "./Problem.ts"

/**
 * The paths that answer without a token: an orchestrator's probes carry none, and the status page (`/`) holds no
 * data (its stream and the data it reads need the token).
 */
const openPaths: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/"])

/** The SHA-256 digest tokens are compared as. */
export const digest = (text: string) => crypto.createHash("sha256").update(text, "utf8").digest()

/**
 * Whether an `Authorization` header carries one of `tokens` (SHA-256 digests) as `Bearer <token>`. Every token is
 * compared with `timingSafeEqual` over equal-length digests, so the time taken says nothing about how much of a
 * token was right, nor which one matched.
 */
export const bearerMatches = (header: string | undefined, tokens: ReadonlyArray<Buffer>): boolean => {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header)
  if (match === null) return false
  const offered = digest(match[1]!)
  let found = false
  for (const token of tokens) found = crypto.timingSafeEqual(offered, token) || found
  return found
}

/** The host name of a `Host` header without its port (`[::1]:8080` → `::1`), or `undefined` if it is not one. */
export const hostName = (header: string): string | undefined => {
  const match = /^\[([0-9A-Fa-f:.]+)\](?::\d*)?$/.exec(header) ?? /^([^:[\]]*)(?::\d*)?$/.exec(header)
  return match === null ? undefined : match[1]
}

/** Whether a content type is JSON: `application/json`, with parameters or without. */
export const isJson = (contentType: string): boolean => /^\s*application\/json\s*(?:;|$)/i.test(contentType)

/** What the checks read of a request: Node's `IncomingMessage` and effect's `HttpServerRequest` both have these. */
export interface RequestHead {
  readonly method?: string | undefined
  readonly url?: string | undefined
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

const header = (request: RequestHead, name: string): string | undefined => {
  const value = request.headers[name]
  return typeof value === "string" ? value : undefined
}

/** Whether a request carries a body (a non-zero `Content-Length`, or a `Transfer-Encoding`). */
export const hasBody = (request: RequestHead): boolean =>
  (request.headers["content-length"] !== undefined && request.headers["content-length"] !== "0") ||
  request.headers["transfer-encoding"] !== undefined

/** The methods and headers a preflight may ask for. */
const preflightHeaders = {
  "access-control-allow-methods": "GET, HEAD, POST",
  "access-control-allow-headers": "authorization, content-type, idempotency-key",
  "access-control-max-age": "600"
}

/** The checks of steps 2 to 4 and the CORS headers of step 5, for `config`: the pure part of `make`. */
export interface Checks {
  /** The refusal a request gets before any route sees it (421, 401, 415), or `undefined` to serve it. */
  readonly refusal: (request: RequestHead) => Problem.Problem | undefined
  /** The CORS headers an answer to `origin` carries, or `undefined` when `corsOrigins` does not list it. */
  readonly corsHeaders: (origin: string | undefined) => Readonly<Record<string, string>> | undefined
}

/** The checks for `config`. */
export const checks = (config: HostConfig["Service"]): Checks => {
  const tokens = config.authToken.map((token) => digest(Redacted.value(token)))
  const origins: ReadonlySet<string> = new Set(config.corsOrigins)
  const loopbackBind = Exposure.isLoopback(config.host)
  /** The last `Host` header judged and its verdict: a client sends the same one on every request. */
  let lastHost: string | undefined
  let lastHostLoopback = false
  const loopbackHost = (value: string): boolean => {
    if (value !== lastHost) {
      const name = hostName(value)
      lastHostLoopback = name !== undefined && Exposure.isLoopback(name)
      lastHost = value
    }
    return lastHostLoopback
  }

  /** The last `Content-Type` judged and its verdict, remembered the same way. */
  let lastType: string | undefined
  let lastTypeJson = false
  const json = (value: string): boolean => {
    if (value !== lastType) {
      lastTypeJson = isJson(value)
      lastType = value
    }
    return lastTypeJson
  }

  const refusal = (request: RequestHead): Problem.Problem | undefined => {
    const host = header(request, "host")
    if (loopbackBind && host !== undefined && !loopbackHost(host)) return Problem.misdirected
    if (tokens.length > 0 && !openPaths.has((request.url ?? "/").split("?", 1)[0]!)) {
      if (!bearerMatches(header(request, "authorization"), tokens)) return Problem.unauthorized
    }
    if (request.method === "POST") {
      const type = header(request, "content-type")
      if ((type !== undefined || hasBody(request)) && (type === undefined || !json(type))) {
        return Problem.unsupportedMediaType(type)
      }
    }
    return undefined
  }

  const corsHeaders = (origin: string | undefined) =>
    origin !== undefined && origins.size > 0 && origins.has(origin)
      ? {
        "access-control-allow-origin": origin,
        "access-control-expose-headers": "idempotent-replayed, retry-after",
        vary: "Origin"
      }
      : undefined

  return { refusal, corsHeaders }
}

/** The checks for `config`, as a wrapper around the router's app. */
export const make = (config: HostConfig["Service"]) => {
  const { corsHeaders, refusal } = checks(config)
  const origins: ReadonlySet<string> = new Set(config.corsOrigins)

  return <E, R>(
    httpApp: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
    request: HttpServerRequest.HttpServerRequest
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R> => {
    const origin = origins.size === 0 ? undefined : request.headers.origin
    const allowed = origin !== undefined && origins.has(origin)
    if (allowed && request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined) {
      return Effect.succeed(HttpServerResponse.empty({
        status: 204,
        headers: { ...preflightHeaders, "access-control-allow-origin": origin, vary: "Origin" }
      }))
    }
    const problem = refusal(request)
    // a refusal leaves the body unread: close the connection after it, so that no client sends its next request
    // onto a socket Node is about to reset
    const answer = problem === undefined
      ? httpApp
      : Effect.succeed(
        hasBody(request)
          ? HttpServerResponse.setHeader(Problem.toResponse(problem), "connection", "close")
          : Problem.toResponse(problem)
      )
    const cors = corsHeaders(origin)
    return cors === undefined ? answer : Effect.map(answer, (response) => HttpServerResponse.setHeaders(response, cors))
  }
}
