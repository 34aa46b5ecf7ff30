/**
 * The hot route served straight from Node's `request` event: `POST /sectors/{sector}/ops` is read, checked and
 * answered here, without effect's per-request HTTP machinery (a fiber, a scope, a request context, a span and the
 * route lookup per request, the body read through a stream, the response rendered from an `HttpServerResponse`) — the
 * issue 17 profile put most of a single-op POST's time there. Every other request, and a submission sent with
 * `Expect: 100-continue`, goes on to the router (`Http`), which answers a submission with the same functions.
 *
 * It answers exactly as the router does: the `Guard` first (421, 401, 415, CORS headers), the body against
 * `maxBodyBytes` (declared, then read; 413), its UTF-8, then `Request.readSubmission` (400, 413), the submission
 * through `Sectors` (a durable one in a `DurableWaiters` place), the core's errors as problems (`Problem.of`: the
 * cause of `SinkUnavailable` logged under an incident id), a defect as a logged 500. One fiber per submission, in the
 * routes' scope: a client that goes away interrupts it (a durable wait gives its place back), and closing the routes
 * interrupts what is left.
 *
 * `Http.makeServer` takes the door and consults it before the router; `Http.routes` opens it once its handler is
 * built (`FrontDoor.layer` provides one, closed until then).
 *
 * **Gotchas** a submission answered here has no `http.server` span: with OTLP tracing on, its spans are the
 * sector's and the database's only.
 */
import { Errors } from "@sectors/core"
import { Cause, Context, Effect, Exit, Fiber, Layer, Result, type Scope } from "effect"
import type * as http from "node:http"
import type { DurableWaiters } from "./DurableWaiters.ts"
import * as Guard from "./Guard.ts"
import type { HostConfig } from "./HostConfig.ts"
import * as Problem from "./Problem.ts"
import * as Request from "./Request.ts"

/** A handler of Node's `request` event: `true` when it took the request, `false` to pass it on. */
export type Handler = (request: http.IncomingMessage, response: http.ServerResponse) => boolean

/** Where the server looks first; `handler` is set while the routes are open. */
export interface Door {
  handler: Handler | undefined
}

export class FrontDoor extends Context.Service<FrontDoor, Door>()("sector-host/FrontDoor") {}

/** A closed door: the server passes every request on until `Http.routes` opens it. */
export const layer: Layer.Layer<FrontDoor> = Layer.sync(FrontDoor)(() => ({ handler: undefined }))

/** `/sectors/{sector}/ops`, with or without a query. */
const submitPath = /^\/sectors\/([^/?]*)\/ops(?:\?(.*))?$/

/** What a submission's answer is, success or problem: status, headers, JSON body. */
export interface Answer {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body: unknown
  readonly contentType: "application/json" | "application/problem+json"
}

/** A problem as an `Answer`. */
export const problemAnswer = (problem: Problem.Problem): Answer => ({
  status: problem.status,
  headers: problem.headers,
  body: Problem.body(problem),
  contentType: "application/problem+json"
})

/** What the door needs of the routes: the checks, the limits, and how to run a submission to its answer. */
export interface Options {
  readonly config: HostConfig["Service"]
  /** Runs a read submission to its answer (never fails: problems are answers). */
  readonly submit: (submission: Request.Submission) => Effect.Effect<Answer>
  readonly waiters: DurableWaiters
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** The `?ack=` of a query as the router's `ParsedSearchParams` gives it: a string, or every value when repeated. */
const ackOf = (query: string | undefined): string | ReadonlyArray<string> | undefined => {
  if (query === undefined || !query.includes("ack")) return undefined
  const values = new URLSearchParams(query).getAll("ack")
  return values.length === 0 ? undefined : values.length === 1 ? values[0] : values
}

/** The path segment as the router decodes it, or `undefined` if it cannot be decoded (the router then answers). */
const decodeSegment = (segment: string): string | undefined => {
  if (!segment.includes("%")) return segment
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

/**
 * The door's handler for the routes' `options`: runs each submission as a fiber of `context` in `scope`. Takes only
 * `POST /sectors/{sector}/ops` without `Expect`.
 */
export const make = (
  options: Options,
  context: Context.Context<never>,
  scope: Scope.Scope
): Handler => {
  const { config } = options
  const { corsHeaders, refusal } = Guard.checks(config)
  const run = Effect.runForkWith(context)
  const maxBytes = config.maxBodyBytes

  const send = (
    request: http.IncomingMessage,
    response: http.ServerResponse,
    answer: Answer,
    close: boolean
  ) => {
    if (response.writableEnded || response.destroyed) return
    const text = JSON.stringify(answer.body)
    const cors = corsHeaders(request.headers.origin)
    response.writeHead(answer.status, {
      ...answer.headers,
      ...cors,
      "content-type": answer.contentType,
      "content-length": Buffer.byteLength(text),
      ...(close ? { connection: "close" } : {})
    })
    response.end(text)
  }

  const submit = (
    request: http.IncomingMessage,
    response: http.ServerResponse,
    text: string,
    parts: Request.SubmissionParts
  ) => {
    const read = Request.readSubmission(text, parts, config)
    if (Result.isFailure(read)) return send(request, response, problemAnswer(read.failure), false)
    const fiber = Fiber.runIn(run(options.submit(read.success)), scope)
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit)) return send(request, response, exit.value, false)
      if (Cause.hasInterruptsOnly(exit.cause)) {
        // the client left (nothing to answer), or the routes closed under it while the host shut down
        const shuttingDown = Problem.fromError(new Errors.ShuttingDown({ sectorId: read.success.sector }))
        return send(request, response, problemAnswer(shuttingDown), true)
      }
      // `submit` answers every failure; this is a defect
      run(Problem.incident(Problem.internal, "Error", "HTTP request failed unexpectedly", exit.cause)).addObserver(
        (logged) => send(request, response, problemAnswer(Exit.isSuccess(logged) ? logged.value : Problem.internal), false)
      )
    })
    if (fiber.pollUnsafe() === undefined) {
      response.on("close", () => {
        if (!response.writableEnded) fiber.interruptUnsafe()
      })
    }
  }

  return (request, response) => {
    if (request.method !== "POST" || request.headers.expect !== undefined) return false
    const match = submitPath.exec(request.url ?? "")
    if (match === null) return false
    const sector = decodeSegment(match[1]!)
    if (sector === undefined) return false

    const problem = refusal(request)
    if (problem !== undefined) {
      // a refusal leaves the body unread: close the connection after it (as `Guard` does)
      send(request, response, problemAnswer(problem), Guard.hasBody(request))
      return true
    }
    const declared = request.headers["content-length"]
    if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
      const tooLarge = Problem.tooLarge([{ field: "body", message: `is ${declared} bytes; must be at most ${maxBytes} bytes` }])
      send(request, response, problemAnswer(tooLarge), true)
      return true
    }
    const parts: Request.SubmissionParts = {
      sector,
      ack: ackOf(match[2]),
      idempotencyKey: typeof request.headers["idempotency-key"] === "string"
        ? request.headers["idempotency-key"]
        : undefined
    }
    const chunks: Array<Buffer> = []
    let bytes = 0
    let over = false
    request.on("data", (chunk: Buffer) => {
      if (over) return
      bytes += chunk.length
      if (bytes > maxBytes) {
        over = true
        chunks.length = 0
        send(request, response, problemAnswer(Problem.tooLarge([{ field: "body", message: `must be at most ${maxBytes} bytes` }])), true)
        return
      }
      chunks.push(chunk)
    })
    request.on("end", () => {
      if (over) return
      let text: string
      try {
        text = utf8.decode(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks))
      } catch {
        return send(request, response, problemAnswer(Problem.invalid([{ field: "body", message: "is not valid UTF-8" }])), false)
      }
      submit(request, response, text, parts)
    })
    return true
  }
}
