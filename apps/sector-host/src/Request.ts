/**
 * Reading and checking a request's parts for the HTTP API (`Http`): path ids, the `ack` query, the body's bytes
 * (against `maxBodyBytes`, declared and read), its UTF-8, its JSON, and the limits on what it holds (nesting depth,
 * op count, each op's `data` size) — each failure as the problem or the issue the API answers with.
 */
import { ByteSize, Effect, Predicate, Result } from "effect"
import { HttpRouter, HttpServerRequest } from "effect/http"
import * as crypto from "node:crypto"
import type { HostConfig } from "./HostConfig.ts"
import * as Problem from "./Problem.ts"

/** A path segment as an id: decimal digits only, a safe integer. */
export const parseId = (field: string, text: string | undefined): Result.Result<number, Problem.Issue> => {
  const id = text !== undefined && /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN
  return Number.isSafeInteger(id)
    ? Result.succeed(id)
    : Result.fail({ field, message: `must be a non-negative safe integer, got ${JSON.stringify(text ?? "")}` })
}

/** The ids in the path named `fields`, or 400 naming each bad one. */
export const pathIds = <const Fields extends ReadonlyArray<string>>(...fields: Fields) =>
  Effect.flatMap(HttpRouter.params, (params) => {
    const ids: Record<string, number> = {}
    const issues: Array<Problem.Issue> = []
    for (const field of fields) {
      const id = parseId(field, params[field])
      if (Result.isSuccess(id)) ids[field] = id.success
      else issues.push(id.failure)
    }
    return issues.length === 0
      ? Effect.succeed(ids as Record<Fields[number], number>)
      : Effect.fail(Problem.invalid(issues))
  })

/** `?ack=`: `accepted` (the default) or `durable`. */
export const parseAck = (
  value: string | ReadonlyArray<string> | undefined
): Result.Result<"accepted" | "durable", Problem.Issue> =>
  value === undefined
    ? Result.succeed("accepted")
    : value === "accepted" || value === "durable"
    ? Result.succeed(value)
    : Result.fail({ field: "ack", message: `must be "accepted" or "durable", got ${JSON.stringify(value)}` })

/** Decodes UTF-8 strictly: a byte sequence that is not UTF-8 fails rather than turning into U+FFFD. */
const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The body as text, at most `maxBytes` of it: 413 past that, judged by `Content-Length` before reading. A body that
 * is not UTF-8 is refused (400) rather than decoded with replacement characters, which would store something the
 * client never sent.
 */
export const readBody = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) => {
  const declared = request.headers["content-length"]
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
    return Effect.fail(
      Problem.tooLarge([{ field: "body", message: `is ${declared} bytes; must be at most ${maxBytes} bytes` }])
    )
  }
  return request.arrayBuffer.pipe(
    Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(maxBytes)),
    Effect.mapError((error) =>
      error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
        ? Problem.tooLarge([{ field: "body", message: `must be at most ${maxBytes} bytes` }])
        : Problem.fromError(error)
    ),
    Effect.flatMap((bytes) =>
      Effect.try({
        try: () => utf8.decode(bytes),
        catch: () => Problem.invalid([{ field: "body", message: "is not valid UTF-8" }])
      })
    )
  )
}

/**
 * An idempotency key as a client sends it — the `Idempotency-Key` header, or a WebSocket frame's `idempotencyKey`
 * (`field` names it in the issue): absent, or 1 to 255 visible ASCII characters (a UUID is the usual choice).
 */
export const parseKey = (field: string, value: unknown): Result.Result<string | undefined, Problem.Issue> =>
  value === undefined
    ? Result.succeed(undefined)
    : typeof value === "string" && /^[\x21-\x7e]{1,255}$/.test(value)
    ? Result.succeed(value)
    : Result.fail({ field, message: "must be 1 to 255 visible ASCII characters" })

/**
 * The `Idempotency-Key` header of a submission (`parseKey`). Its fingerprint is the SHA-256 of the body, so the same
 * key with another body is told apart (422).
 */
export const parseIdempotencyKey = (
  header: string | undefined,
  body: string
): Result.Result<{ readonly key: string; readonly fingerprint: string } | undefined, Problem.Issue> =>
  Result.map(parseKey("Idempotency-Key", header), (key) =>
    key === undefined
      ? undefined
      : { key, fingerprint: crypto.createHash("sha256").update(body).digest("base64url") })

/** The body as JSON, or 400. */
export const parseJson = (text: string): Effect.Effect<unknown, Problem.Problem> => {
  if (text.trim() === "") {
    return Effect.fail(
      Problem.invalid([{ field: "body", message: `must be a JSON object {"ops": [...]}, got nothing` }])
    )
  }
  return Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (error) => {
      const reason = error instanceof Error ? error.message : String(error)
      return Problem.invalid([{ field: "body", message: `is not valid JSON: ${reason}` }])
    }
  })
}

/** Most levels of objects and arrays a submission's body may nest (`{"ops":[{"data":{}}]}` is 4). */
export const maxJsonDepth = 64

/** Whether `value` nests more than `limit` levels of objects and arrays, found without recursion. */
const nestsDeeperThan = (value: unknown, limit: number): boolean => {
  const stack: Array<readonly [object, number]> = Predicate.isObjectOrArray(value) ? [[value, 1]] : []
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!
    if (depth > limit) return true
    for (const inner of Object.values(item)) if (Predicate.isObjectOrArray(inner)) stack.push([inner, depth + 1])
  }
  return false
}

/** Limits on a submission: its nesting, the number of its ops, and each op's `data` as JSON bytes. */
export const limitIssues = (body: unknown, config: HostConfig["Service"]): Array<Problem.Issue> => {
  if (nestsDeeperThan(body, maxJsonDepth)) {
    return [{ field: "body", message: `nests deeper than ${maxJsonDepth} levels of objects and arrays` }]
  }
  if (!Predicate.isObject(body) || !Array.isArray(body.ops)) return []
  const ops: ReadonlyArray<unknown> = body.ops
  if (ops.length > config.maxOpsPerRequest) {
    return [{ field: "ops", message: `holds ${ops.length} ops; at most ${config.maxOpsPerRequest} per request` }]
  }
  const issues: Array<Problem.Issue> = []
  ops.forEach((op, index) => {
    if (!Predicate.isObject(op) || !("data" in op)) return
    const bytes = Buffer.byteLength(JSON.stringify(op.data) ?? "", "utf8")
    if (bytes > config.maxDataBytes) {
      issues.push({ index, field: "data", message: `is ${bytes} bytes as JSON; at most ${config.maxDataBytes} allowed` })
    }
  })
  return issues
}

/**
 * The body's shape: an object with `fields` and nothing else — `{"ops": [...]}` for a POST, the frame's fields for
 * `/ingest` (`shape` shows it in the issue).
 */
export const envelopeIssues = (
  body: unknown,
  fields: ReadonlyArray<string> = ["ops"],
  shape = `{"ops": [...]}`
): Array<Problem.Issue> =>
  Predicate.isObject(body)
    ? Object.keys(body).filter((key) => !fields.includes(key)).map((field) => ({
      field,
      message: `is not a field of a submission (only ${fields.map((f) => JSON.stringify(f)).join(", ")})`
    }))
    : [{ field: "body", message: `must be a JSON object ${shape}` }]
