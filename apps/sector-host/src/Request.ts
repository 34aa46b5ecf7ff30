/**
 * Reading and checking a request's parts for the HTTP API (`Http`): path ids, the `ack` query, the body's bytes
 * (against `maxBodyBytes`, declared and read), its UTF-8, its JSON, and the limits on what it holds (nesting depth,
 * op count, each op's `data` size) — each failure as the problem or the issue the API answers with.
 */
import { type Batch, Op } from "@sectors/core"
import { ByteSize, Effect, Predicate, Result } from "effect"
import { HttpRouter, HttpServerRequest } from "effect/http"
import * as crypto from "node:crypto"
import type { HostConfig } from "./HostConfig.ts"
import * as Problem from "./Problem.ts"
import * as SubmissionScan from "./SubmissionScan.ts"

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
  // one continuation for the read's failure and its decoding, not one per step
  return Effect.matchEffect(Effect.provideService(request.arrayBuffer, HttpServerRequest.MaxBodySize, ByteSize.bytes(maxBytes)), {
    onFailure: (error) =>
      Effect.fail(
        error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
          ? Problem.tooLarge([{ field: "body", message: `must be at most ${maxBytes} bytes` }])
          : Problem.fromError(error)
      ),
    onSuccess: (bytes) => {
      try {
        return Effect.succeed(utf8.decode(bytes))
      } catch {
        return Effect.fail(Problem.invalid([{ field: "body", message: "is not valid UTF-8" }]))
      }
    }
  })
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
export const parseJsonResult = (text: string): Result.Result<unknown, Problem.Problem> => {
  try {
    return Result.succeed(JSON.parse(text) as unknown)
  } catch (error) {
    if (text.trim() === "") {
      return Result.fail(
        Problem.invalid([{ field: "body", message: `must be a JSON object {"ops": [...]}, got nothing` }])
      )
    }
    const reason = error instanceof Error ? error.message : String(error)
    return Result.fail(Problem.invalid([{ field: "body", message: `is not valid JSON: ${reason}` }]))
  }
}

/** The body as JSON, or 400 (`parseJsonResult` as an effect). */
export const parseJson = (text: string): Effect.Effect<unknown, Problem.Problem> =>
  Effect.fromResult(parseJsonResult(text))

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

/**
 * How many times longer, in UTF-8 bytes, `JSON.stringify` of a parsed value can be than the JSON text it was parsed
 * from: strings and keys never grow (an escape becomes the character or stays the same escape), whitespace goes, and
 * a number grows at most from `1e20` (4 characters) to `100000000000000000000` (21) — 5.25 times. A UTF-16 code unit
 * of the text is at most 3 bytes, so the bound per code unit of text is 6 × 3.
 */
export const stringifyGrowth = 6 * 3

/**
 * Limits on a submission: its nesting, the number of its ops, and each op's `data` as JSON bytes. With the length of
 * the text `body` was parsed from, the walks that a text that short cannot fail are skipped: nesting `maxJsonDepth`
 * levels takes twice as many brackets, and no op's `data` can stringify to more than `stringifyGrowth` × the text.
 */
export const limitIssues = (
  body: unknown,
  config: HostConfig["Service"],
  textLength = Number.POSITIVE_INFINITY
): Array<Problem.Issue> => {
  if (textLength > 2 * maxJsonDepth && nestsDeeperThan(body, maxJsonDepth)) {
    return [{ field: "body", message: `nests deeper than ${maxJsonDepth} levels of objects and arrays` }]
  }
  if (!Predicate.isObject(body) || !Array.isArray(body.ops)) return []
  const ops: ReadonlyArray<unknown> = body.ops
  if (ops.length > config.maxOpsPerRequest) {
    return [{ field: "ops", message: `holds ${ops.length} ops; at most ${config.maxOpsPerRequest} per request` }]
  }
  if (textLength * stringifyGrowth <= config.maxDataBytes) return []
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

// ---- ops ----

const componentName = /^[A-Za-z0-9_.-]{1,64}$/
const workerId = /^[\x21-\x7e]{1,128}$/
const isId = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** How many own enumerable keys `value` has, without allocating their list. */
const keyCount = (value: object): number => {
  let count = 0
  for (const _ in value) count++
  return count
}

/** Whether every string and key in a JSON value is one PostgreSQL can store (no NUL, no lone surrogate). */
const storable = (value: unknown): boolean => {
  if (typeof value === "string") return !value.includes("\u0000") && value.isWellFormed()
  if (Array.isArray(value)) {
    for (const inner of value) if (!storable(inner)) return false
  } else if (value !== null && typeof value === "object") {
    for (const key in value) {
      if (!storable(key) || !storable((value as Record<string, unknown>)[key])) return false
    }
  }
  return true
}

/** One op of parsed JSON that is plainly valid, rebuilt as `Op.decodeOps` builds it, or `undefined` to let it judge. */
const plainOp = (input: unknown): Op.Op | undefined => {
  if (input === null || typeof input !== "object" || Array.isArray(input)) return undefined
  const op = input as Record<string, unknown>
  const { component, entity } = op
  if (!isId(entity)) return undefined
  switch (op.type) {
    case "set": {
      const data = op.data
      if (
        keyCount(op) !== 4 || typeof component !== "string" || !componentName.test(component) ||
        data === null || typeof data !== "object" || Array.isArray(data) || Object.hasOwn(data, "__proto__") ||
        !storable(data)
      ) return undefined
      return { type: "set", entity, component, data: data as Op.Data }
    }
    case "remove":
      return keyCount(op) === 3 && typeof component === "string" && componentName.test(component)
        ? { type: "remove", entity, component }
        : undefined
    case "delete":
      return keyCount(op) === 2 ? { type: "delete", entity } : undefined
    case "authority": {
      const worker = op.worker
      return keyCount(op) === 4 && typeof component === "string" && componentName.test(component) &&
          (worker === null || (typeof worker === "string" && workerId.test(worker)))
        ? { type: "authority", entity, component, worker }
        : undefined
    }
    default:
      return undefined
  }
}

/**
 * A submission's ops when every one is plainly valid, built as `Op.decodeOps` builds them, checked by hand without a
 * Schema parse per op; `undefined` for anything else. For JSON as `JSON.parse` returns it (an HTTP body, an `/ingest`
 * frame): its values are JSON by construction.
 */
export const plainOps = (input: unknown, maxOps: number): ReadonlyArray<Op.Op> | undefined => {
  if (!Array.isArray(input) || input.length === 0 || input.length > maxOps) return undefined
  const ops: Array<Op.Op> = []
  for (const item of input) {
    const op = plainOp(item)
    if (op === undefined) return undefined
    ops.push(op)
  }
  return ops
}

/**
 * A submission's ops, decoded as `Op.decodeOps` decodes them (every issue of every op when one is wrong): the usual
 * case by `plainOps`, anything else by `Op.decodeOps`, which has the last word and says what is wrong.
 */
export const decodeOps = (input: unknown, maxOps: number): Result.Result<ReadonlyArray<Op.Op>, Problem.Issue[]> => {
  const plain = plainOps(input, maxOps)
  if (plain !== undefined) return Result.succeed(plain)
  const decoded = Effect.runSync(Effect.result(Op.decodeOps(input, { maxOps })))
  return Result.isSuccess(decoded) ? Result.succeed(decoded.success) : Result.fail([...decoded.failure.issues])
}

// ---- a submission ----

/** A `POST /sectors/{sector}/ops` read and checked: its sector, ops, acknowledgement and idempotency key. */
export interface Submission {
  readonly sector: number
  readonly ops: ReadonlyArray<Op.Op>
  readonly ack: "accepted" | "durable"
  readonly idempotency: { readonly key: string; readonly fingerprint: string } | undefined
  /** Each op's `JSON.stringify(data)` length, where the read measured it (`SubmissionScan`), for `trySubmit`. */
  readonly dataLengths?: Batch.DataLengths | undefined
}

/** The parts of a submission besides its body: the path's `{sector}`, `?ack=`, the `Idempotency-Key` header. */
export interface SubmissionParts {
  readonly sector: string | undefined
  readonly ack: string | ReadonlyArray<string> | undefined
  readonly idempotencyKey: string | undefined
}

/**
 * Reads a submission from its body's text and its other parts, in the order the API promises (see `Http`): the JSON
 * (400), the limits on it (413, whatever else is wrong), then every field of the path, query and body at once (400).
 * One pass of each. The usual body is read straight from its text (`SubmissionScan.body`, which takes only what the
 * full read takes, and reads it the same); any other the full way (`parseSubmission`).
 */
export const readSubmission = (
  text: string,
  parts: SubmissionParts,
  config: HostConfig["Service"]
): Result.Result<Submission, Problem.Problem> => read(text, parts, config, SubmissionScan.body(text, config))

/** Reads a submission the full way: `JSON.parse`, the limits (413), then every field (400). */
export const parseSubmission = (
  text: string,
  parts: SubmissionParts,
  config: HostConfig["Service"]
): Result.Result<Submission, Problem.Problem> => read(text, parts, config, undefined)

const read = (
  text: string,
  parts: SubmissionParts,
  config: HostConfig["Service"],
  scanned: SubmissionScan.ScannedBody | undefined
): Result.Result<Submission, Problem.Problem> => {
  let ops: Result.Result<ReadonlyArray<Op.Op>, Array<Problem.Issue>>
  let envelope: Array<Problem.Issue> = []
  if (scanned !== undefined) ops = Result.succeed(scanned.ops)
  else {
    const json = parseJsonResult(text)
    if (Result.isFailure(json)) return Result.fail(json.failure)
    const body = json.success
    const overLimits = limitIssues(body, config, text.length)
    if (overLimits.length > 0) return Result.fail(Problem.tooLarge(overLimits))
    envelope = envelopeIssues(body)
    ops = Predicate.isObject(body) ? decodeOps(body.ops, config.maxOpsPerRequest) : Result.succeed([])
  }
  const sector = parseId("sector", parts.sector)
  const ack = parseAck(parts.ack)
  const idempotency = parseIdempotencyKey(parts.idempotencyKey, text)
  if (
    Result.isSuccess(sector) && Result.isSuccess(ack) && Result.isSuccess(idempotency) && envelope.length === 0 &&
    Result.isSuccess(ops)
  ) {
    return Result.succeed({
      sector: sector.success,
      ops: ops.success,
      ack: ack.success,
      idempotency: idempotency.success,
      ...(scanned === undefined ? {} : { dataLengths: scanned.dataLengths })
    })
  }
  return Result.fail(Problem.invalid([
    ...(Result.isFailure(sector) ? [sector.failure] : []),
    ...(Result.isFailure(ack) ? [ack.failure] : []),
    ...(Result.isFailure(idempotency) ? [idempotency.failure] : []),
    ...envelope,
    ...(Result.isFailure(ops) ? ops.failure : [])
  ]))
}
