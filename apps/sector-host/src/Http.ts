/**
 * The HTTP API of the host (the README's "The HTTP API"). Handlers are thin: read and validate the
 * whole request, call the sector through `Sectors` (here, or on its owner in a cluster), render the answer. Nothing is applied unless all of a request is valid.
 *
 * A submission is checked in this order: the body against `maxBodyBytes` (the declared `Content-Length` before
 * reading, then the bytes actually read), its UTF-8, the JSON, then the limits on it (at most `maxJsonDepth` levels
 * of nesting, `maxOpsPerRequest`, each op's `data` against `maxDataBytes`) — a request over a limit gets 413 whatever
 * else is wrong with it — and then every field of the path, query and body at once: 400 lists each one, including
 * `data` that PostgreSQL could not store (NUL, lone surrogates: `Op.Data` refuses them). The depth limit comes first
 * because everything after it (measuring `data`, decoding ops) walks the JSON recursively: a body of nested brackets
 * would overflow the stack.
 *
 * Every failure is an `application/problem+json` response (`Problem`): the handlers map the core's typed errors,
 * a known path asked with another method gets 405 with `Allow` (OPTIONS gets 204 with `Allow`), an unknown route
 * 404, and a defect 500 — logged, since the host serves with the request logger off. Requests Node's HTTP parser
 * refuses before they reach a route (an unknown method, a malformed request line or header) get problem+json too,
 * from the server `makeServer` builds.
 *
 * Before any route sees a request, `Guard` (installed once, around the router) answers CORS preflights, refuses a
 * foreign `Host` on a loopback bind (421), a missing or wrong bearer token when `AUTH_TOKEN` is set (401) and a POST
 * body that is not JSON (415).
 *
 * `GET /ingest` is the WebSocket stream of submissions (`Ingest`): the same checks on each frame as on a POST body,
 * the same problems in its answers, behind the same `Guard`.
 *
 * Waiting for durability is bounded: at most `maxDurableWaiters` `ack=durable` submissions, flushes and durable
 * `/ingest` frames wait at once (`DurableWaiters`); one more gets 503 `too-many-waiters` before it is submitted, so
 * nothing of it is applied. The server's own limits
 * (header, request and keep-alive timeouts, the connection cap) are set from `HostConfig` by `makeServer`.
 */
import { type Resilience, SectorHost, SectorsConfig } from "@sectors/core"
import { Cause, Context, Duration, Effect, Fiber, Layer, Option, Tracer } from "effect"
import { HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import * as http from "node:http"
import * as https from "node:https"
import type * as net from "node:net"
import * as DurableWaiters from "./DurableWaiters.ts"
import { HostConfig } from "./HostConfig.ts"
import * as Guard from "./Guard.ts"
import * as Ingest from "./Ingest.ts"
import { Lifecycle } from "./Lifecycle.ts"
import * as Problem from "./Problem.ts"
import * as Request from "./Request.ts"
import { Sectors } from "./Sectors.ts"
import * as StatusPage from "./StatusPage.ts"

/** How deep a body may nest (see `Request`). */
export const maxJsonDepth = Request.maxJsonDepth
import * as Tls from "./Tls.ts"

type Handler = (
  request: HttpServerRequest.HttpServerRequest
) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpRouter.Provided>

interface Endpoint {
  readonly method: "GET" | "POST"
  readonly path: HttpRouter.PathInput
  readonly handler: Handler
}

/**
 * Every method Node's parser lets through to a route; the ones a path does not allow answer 405. OPTIONS is answered
 * with `Allow`, and CONNECT never reaches the router (Node hands it to the server's `connect` event). HEAD is allowed
 * where GET is (the router answers it as GET). The router registers any method it is given, not only the standard
 * ones its type names, so WebDAV's PROPFIND on a known path is a 405 too.
 */
const methods = http.METHODS.filter((method) => !["OPTIONS", "CONNECT"].includes(method)) as ReadonlyArray<
  "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "QUERY"
>

/** The content type of the Prometheus text exposition format. */
export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

const json = (body: unknown, status = 200) => HttpServerResponse.jsonUnsafe(body, { status })

const iso = (millis: number | undefined) => (millis === undefined ? null : new Date(millis).toISOString())

/** Answers a handler's failure with its problem response. */
const orProblem = Effect.catch((error: Problem.KnownError | Problem.Problem) => Problem.answer(error))

// ---- rendering ----

const circuitJson = (status: Resilience.CircuitStatus) =>
  status._tag === "Open"
    ? { state: status._tag, until: iso(status.until), consecutiveOpenings: status.consecutiveOpenings }
    : { state: status._tag }

// ---- routes ----

/** Builds every endpoint over the host, the lifecycle and the configuration. */
const endpoints = Effect.gen(function*() {
  const host = yield* SectorHost.SectorHost
  const sectors = yield* Sectors
  const lifecycle = yield* Lifecycle
  const config = yield* HostConfig
  const sectorsConfig = yield* SectorsConfig.SectorsConfig

  /** Requests waiting for durability now, here and on `/ingest`: at most `maxDurableWaiters`. */
  const waiters = DurableWaiters.make(config.maxDurableWaiters)
  const { waiting } = waiters
  /** `GET /ingest`: the WebSocket stream of submissions (`Ingest`). */
  const ingest = yield* Ingest.make(waiters)
  /** `GET /`, `GET /status/stream`, `GET /status/sectors/{sector}`: the live status page and its data (`StatusPage`). */
  const statusPage = yield* StatusPage.endpoints

  /** Whether the running request is inside a trace (a tracer that exports made its server span). */
  const traced = () => {
    const fiber = Fiber.getCurrent()
    return fiber !== undefined && Context.getOrUndefined(fiber.context, Tracer.ParentSpan) !== undefined
  }

  /** `POST /sectors/{sector}/ops?ack=accepted|durable` with `{"ops": [...]}`: the hot path, without a span of its own. */
  const submitOps = Effect.fnUntraced(function*(request: HttpServerRequest.HttpServerRequest) {
    const params = yield* HttpRouter.params
    const search = yield* HttpServerRequest.ParsedSearchParams
    const text = yield* Request.readBody(request, config.maxBodyBytes)
    const submission = yield* Effect.fromResult(Request.readSubmission(text, {
      sector: params.sector,
      ack: search.ack,
      idempotencyKey: request.headers["idempotency-key"]
    }, config))
    const durable = submission.ack === "durable"
    // most submissions of a busy sector: taken at once, without the submission's effect pipeline (`trySubmit`) —
    // unless the request is traced, where `submit` gives the submission its span
    const now = durable || submission.idempotency !== undefined || traced()
      ? undefined
      : sectors.trySubmit(submission.sector, submission.ops, submission.dataLengths)
    const accepted = yield* (now ?? (durable
      ? waiting(sectors.submit(submission.sector, submission.ops, {
        ack: "durable",
        durableTimeout: config.durableTimeout,
        mailboxWait: sectorsConfig.mailboxWait,
        idempotency: submission.idempotency
      }))
      : sectors.submit(submission.sector, submission.ops, {
        ack: "accepted",
        mailboxWait: sectorsConfig.mailboxWait,
        idempotency: submission.idempotency
      })))
    const result = {
      sector: submission.sector,
      accepted: accepted.accepted,
      firstSeq: accepted.firstSeq,
      lastSeq: accepted.lastSeq
    }
    const response = durable ? json({ ...result, persisted: true }, 200) : json(result, 202)
    // the answer to an earlier request with this Idempotency-Key: nothing was applied this time
    return accepted.replayed === true ? HttpServerResponse.setHeader(response, "idempotent-replayed", "true") : response
  })
  // (not `fnUntraced(body, orProblem)`: its pipeable form spreads `arguments` on every call)
  const submit = (request: HttpServerRequest.HttpServerRequest) => orProblem(submitOps(request))

  /** `GET /sectors/{sector}/entities/{entity}`. */
  const entity = Effect.fn("Http.entity")(function*() {
    const ids = yield* Request.pathIds("sector", "entity")
    const found = yield* sectors.get(ids.sector, ids.entity)
    if (Option.isNone(found)) return yield* Problem.notFound(`sector ${ids.sector} has no entity ${ids.entity}`)
    const view = found.value
    return json({
      sector: ids.sector,
      entity: view.entity,
      components: view.components,
      authority: view.authority,
      seq: view.seq
    })
  }, orProblem)

  /** `GET /sectors/{sector}`: the sector's figures and the circuit. */
  const status = Effect.fn("Http.status")(function*() {
    const { sector } = yield* Request.pathIds("sector")
    const { circuit, stats: { sectorId: _, persistedAt, ...stats } } = yield* sectors.stats(sector)
    return json({ sector, ...stats, persistedAt: iso(persistedAt), circuit: circuitJson(circuit) })
  }, orProblem)

  /** `GET /sectors`: the resident sectors, one line each, and the residency cap. */
  const list = Effect.fn("Http.list")(function*() {
    const sectors = yield* host.list
    return json({
      ...host.residency(),
      sectors: [...sectors].sort((a, b) => a.sectorId - b.sectorId).map(({ sectorId, ...summary }) => ({
        sector: sectorId,
        ...summary
      }))
    })
  }, orProblem)

  /**
   * `POST /sectors/{sector}/flush`: answers once everything accepted so far is durable (at most `durableTimeout`); a
   * durable waiter like `ack=durable`, so bounded by `maxDurableWaiters` too.
   */
  const flush = Effect.fn("Http.flush")(function*() {
    const { sector } = yield* Request.pathIds("sector")
    const persistedSeq = yield* waiting(sectors.flush(sector).pipe(Effect.timeoutOption(config.durableTimeout)))
    if (Option.isNone(persistedSeq)) {
      return yield* Problem.timedOut(`sector ${sector}: not everything accepted became durable within the wait`, {
        sector
      })
    }
    return json({ sector, persistedSeq: persistedSeq.value })
  }, orProblem)

  /** `GET /sectors/{sector}/dead-letters`. */
  const deadLetters = Effect.fn("Http.deadLetters")(function*() {
    const { sector } = yield* Request.pathIds("sector")
    const letters = yield* sectors.deadLetters(sector)
    return json({ sector, deadLetters: letters.map((letter) => ({ ...letter, at: iso(letter.at) })) })
  }, orProblem)

  /**
   * `GET /cluster`: standalone, `{mode: "standalone"}`; a runner, `{mode: "cluster", runner, shardsPerGroup, runners:
   * [{address, healthy, shards}], sectors}` — this runner's address, every runner registered (its shard count as the
   * cluster assigns them) and the sectors resident here.
   */
  const cluster = Effect.fn("Http.cluster")(function*() {
    if (sectors.mode._tag === "Standalone") return json({ mode: "standalone" })
    const view = yield* sectors.mode.view
    const resident = yield* host.list
    return json({ mode: "cluster", ...view, sectors: resident.map((s) => s.sectorId).sort((a, b) => a - b) })
  }, orProblem)

  /** `GET /healthz`: alive and serving. */
  const healthz = Effect.fn("Http.healthz")(function*() {
    return json({ status: "ok" })
  })

  /**
   * `GET /readyz`: 200 while the host takes writes — also while it rides out a database outage within its buffer
   * budget; 503 while starting, shutting down, or with the budget (nearly) spent. The body says why either way.
   */
  const readyz = Effect.fn("Http.readyz")(function*() {
    const phase = yield* lifecycle.phase
    const sink = host.sinkHealth()
    const buffer = host.buffer()
    const reason = phase !== "ready" ? phase : !host.accepting() ? "draining" : buffer.full ? "buffer-full" : undefined
    const state = {
      phase,
      database: { reachable: sink.up, downSince: iso(sink.downSince) },
      buffer: { bytes: buffer.bufferedBytes, budget: buffer.budgetBytes },
      circuit: circuitJson(host.circuit())
    }
    if (reason === undefined) return json({ status: "ready", ...state })
    return Problem.toResponse(
      new Problem.Problem({
        status: 503,
        type: "urn:sectors:problem:not-ready",
        title: "Not ready",
        detail: reason === "buffer-full"
          ? "the buffer budget is spent: the database has not taken what was accepted yet"
          : reason === "starting"
          ? "still starting"
          : "shutting down",
        extensions: { reason, ...state }
      })
    )
  })

  /** `GET /metrics`: every metric in the Prometheus text format. */
  const metrics = Effect.fn("Http.metrics")(function*() {
    const text = yield* PrometheusMetrics.format()
    return HttpServerResponse.text(text, { contentType: prometheusContentType })
  })

  const table: ReadonlyArray<Endpoint> = [
    { method: "POST", path: "/sectors/:sector/ops", handler: submit },
    { method: "GET", path: "/sectors/:sector/entities/:entity", handler: entity },
    { method: "GET", path: "/sectors/:sector", handler: status },
    { method: "GET", path: "/sectors", handler: list },
    { method: "POST", path: "/sectors/:sector/flush", handler: flush },
    { method: "GET", path: "/sectors/:sector/dead-letters", handler: deadLetters },
    { method: "GET", path: "/ingest", handler: ingest },
    { method: "GET", path: "/cluster", handler: cluster },
    { method: "GET", path: "/healthz", handler: healthz },
    { method: "GET", path: "/readyz", handler: readyz },
    { method: "GET", path: "/metrics", handler: metrics },
    ...statusPage
  ]
  return [
    ...table.map((endpoint) => HttpRouter.route(endpoint.method, endpoint.path, endpoint.handler)),
    ...otherMethods(table)
  ]
})

/**
 * For each path, the methods it does not allow: 405 with `Allow` (OPTIONS: 204 with `Allow`). Every answer is built
 * once, here, not per request.
 */
const otherMethods = (table: ReadonlyArray<Endpoint>) => {
  const byPath = new Map<HttpRouter.PathInput, Array<string>>()
  for (const { method, path } of table) byPath.set(path, [...(byPath.get(path) ?? []), method])
  return [...byPath].flatMap(([path, defined]) => {
    const allow = defined.includes("GET") ? [...defined, "HEAD", "OPTIONS"] : [...defined, "OPTIONS"]
    const header = allow.join(", ")
    const template = path.replace(/:(\w+)/g, "{$1}")
    return [
      HttpRouter.route("OPTIONS", path, HttpServerResponse.empty({ status: 204, headers: { allow: header } })),
      ...methods.filter((method) => !allow.includes(method)).map((method) =>
        HttpRouter.route(method, path, Problem.toResponse(Problem.methodNotAllowed(method, template, allow)))
      )
    ]
  })
}

/**
 * The last word on every request: what no handler answered — an unknown route, a request that could not be read, a
 * defect — becomes a problem+json response; defects and unexpected failures are logged.
 */
const answerProblems = <E, R>(httpApp: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.catchCauseIf(httpApp, (cause) => !Cause.hasInterruptsOnly(cause), (cause) => {
    const error = Cause.findErrorOption(cause)
    if (!Cause.hasDies(cause) && Option.isSome(error) && HttpServerError.isHttpServerError(error.value)) {
      const problem = Problem.fromError(error.value)
      if (problem.status < 500) return Effect.succeed(Problem.toResponse(problem))
    }
    return Effect.map(
      Problem.incident(Problem.internal, "Error", "HTTP request failed unexpectedly", cause),
      Problem.toResponse
    )
  })

/** `Guard` around the router, problems inside it: every answer, a problem too, passes the guard's CORS step. */
const edge = HttpRouter.middleware(
  Effect.map(HostConfig.useSync((config) => config), (config) => {
    const guard = Guard.make(config)
    return (httpApp) => {
      // built once per app, not per request
      const answered = answerProblems(httpApp)
      return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => guard(answered, request))
    }
  }),
  { global: true }
)

/** A configured timeout in Node's terms: milliseconds, 0 for none (`Infinity`). */
const timeoutMillis = (duration: Duration.Duration): number => {
  const millis = Duration.toMillis(duration)
  return Number.isFinite(millis) ? Math.max(0, Math.round(millis)) : 0
}

/** The limits `makeServer` sets on the server: from `HostConfig`, never Node's implicit defaults. */
export type ServerLimits = Pick<
  HostConfig["Service"],
  "headersTimeout" | "requestTimeout" | "keepAliveTimeout" | "maxConnections"
> & Partial<Pick<HostConfig["Service"], "tlsCert" | "tlsKey">>

/**
 * The host's Node HTTP server, with its limits set explicitly from the configuration: `headersTimeout` and
 * `requestTimeout` (a client slower than them gets 408 and is disconnected; the headers' limit never exceeds the whole
 * request's), `keepAliveTimeout` for idle connections, `maxConnections` (connections past it are closed as they
 * arrive). With `tlsCert` and `tlsKey` it is an HTTPS server (`Tls`) with the same limits. Requests its parser refuses before any route sees them — an unknown method, a malformed request line,
 * header or chunk — are answered with problem+json (and the connection closed) rather than Node's bare
 * `400 Bad Request`, with the statuses Node would have used.
 */
export const makeServer = (limits: ServerLimits): http.Server => {
  const requestTimeout = timeoutMillis(limits.requestTimeout)
  const headersTimeout = timeoutMillis(limits.headersTimeout)
  const options = {
    requestTimeout,
    headersTimeout: requestTimeout === 0 ? headersTimeout : Math.min(headersTimeout, requestTimeout)
  }
  const tls = Tls.credentials({ tlsCert: limits.tlsCert ?? Option.none(), tlsKey: limits.tlsKey ?? Option.none() })
  // an HTTPS server is an HTTP server over TLS: the same events, fields and handlers
  const server = tls === undefined
    ? http.createServer(options)
    : https.createServer({ ...options, ...tls }) as unknown as http.Server
  server.keepAliveTimeout = timeoutMillis(limits.keepAliveTimeout)
  server.maxConnections = limits.maxConnections
  server.on("clientError", (error: NodeJS.ErrnoException, socket: net.Socket) => {
    const answering = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (error.code === "ECONNRESET" || !socket.writable || answering?.headersSent === true) {
      socket.destroy()
      return
    }
    const problem = Problem.fromParserError(error.code)
    const body = JSON.stringify(Problem.body(problem))
    socket.end(
      `HTTP/1.1 ${problem.status} ${http.STATUS_CODES[problem.status] ?? problem.title}\r\n` +
        `content-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `connection: close\r\n\r\n${body}`
    )
  })
  return server
}

/** Every route of the API, with problem+json for whatever they do not answer. Needs the host, lifecycle, config. */
export const routes: Layer.Layer<
  never,
  never,
  HttpRouter.HttpRouter | SectorHost.SectorHost | Sectors | Lifecycle | HostConfig | SectorsConfig.SectorsConfig
> =
  Layer.mergeAll(HttpRouter.addAll(endpoints), edge)
