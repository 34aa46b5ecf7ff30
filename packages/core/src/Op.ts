/**
 * Ops: the four changes a sector accepts, as Schemas — `set` a component's data, `remove` a component, `delete`
 * an entity, set or clear a component's `authority` (the worker that owns it). Sector and entity ids are
 * non-negative safe integers, component names `[A-Za-z0-9_.-]{1,64}`, `data` a JSON object.
 *
 * `decodeOps` validates a whole submission from untrusted input and reports every bad op with its index and field
 * (`InvalidOp`), so a caller can apply all of it or none of it. Each accepted op later gets a per-sector,
 * gap-free `seq` (see `Sector`).
 *
 * **Adding an op kind** touches, besides the Schema here and `types`: `Batch.ts` (the `Entry` it collapses to,
 * `Pending.add`, `Pending.discard`, `entryToOp` — the one op ↔ entry mapping), `SectorState.ts` (`apply` and
 * `applyEntries`, the reference model), `testing/Arbitraries.ts` (generated ops for the properties),
 * `testing/SinkConformance.ts` (what every sink must do with it), sink-pg's `internal/columns.ts` and `Statements.ts`
 * (its columns and statements; `Migrations.ts` if it needs a table), the workloads' `OpSource.ts`, the host's README
 * (the API's op list) and `test/support/Verify.ts` (reading the tables back). Every `switch` over op and entry kinds
 * ends in `absurd`, so the compiler lists the places that do not handle a new kind yet.
 */
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { InvalidOp, type OpIssue } from "./Errors.ts"

/** A non-negative safe integer: what sector and entity ids are. */
export const Id = Schema.Int.check(
  Schema.isBetween({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, {
    message: "must be a non-negative safe integer"
  })
)

/** A sector id. */
export const SectorId = Id
/** An entity id. */
export const EntityId = Id

/** A component name: 1 to 64 of `A-Z a-z 0-9 _ . -`. */
export const ComponentName = Schema.String.check(
  Schema.isPattern(/^[A-Za-z0-9_.-]{1,64}$/, { message: "must be 1 to 64 characters of A-Z a-z 0-9 _ . -" })
)

/** A worker id for authority: 1 to 128 printable ASCII characters, no spaces. */
export const WorkerId = Schema.String.check(
  Schema.isPattern(/^[\x21-\x7e]{1,128}$/, { message: "must be 1 to 128 printable ASCII characters without spaces" })
)

/**
 * What in a JSON value PostgreSQL's jsonb could not store, as a message (undefined when it can store it all): a NUL
 * character, or a string or key that is not well-formed Unicode — a lone surrogate (`"\ud800"`) is valid JSON and a
 * valid JavaScript string, but an op carrying one could never be persisted.
 */
const unstorable = (value: unknown): string | undefined => {
  if (Predicate.isString(value)) return unstorableText(value)
  if (Array.isArray(value)) {
    for (const inner of value) {
      const found = unstorable(inner)
      if (found !== undefined) return found
    }
  } else if (Predicate.isObject(value)) {
    for (const [key, inner] of Object.entries(value)) {
      const found = unstorableText(key) ?? unstorable(inner)
      if (found !== undefined) return found
    }
  }
  return undefined
}

const unstorableText = (text: string): string | undefined =>
  text.includes("\u0000")
    ? "must not contain NUL (\\u0000) characters"
    : text.isWellFormed()
    ? undefined
    : "must be well-formed Unicode (no lone surrogates \\ud800-\\udfff)"

/** Component data: a JSON object PostgreSQL can store (no NUL characters, no lone surrogates). */
export const Data = Schema.Record(Schema.String, Schema.Json).check(Schema.makeFilter(unstorable))

/** Sets a component's data (last write wins). */
export const SetOp = Schema.Struct({
  type: Schema.Literal("set"),
  entity: EntityId,
  component: ComponentName,
  data: Data
})

/** Removes a component. */
export const RemoveOp = Schema.Struct({
  type: Schema.Literal("remove"),
  entity: EntityId,
  component: ComponentName
})

/** Deletes an entity: every component and every authority it has. */
export const DeleteOp = Schema.Struct({
  type: Schema.Literal("delete"),
  entity: EntityId
})

/** Sets (`worker`) or clears (`null`) the worker that has authority over a component. */
export const AuthorityOp = Schema.Struct({
  type: Schema.Literal("authority"),
  entity: EntityId,
  component: ComponentName,
  worker: Schema.NullOr(WorkerId)
})

/** Any op. */
export const Op = Schema.Union([SetOp, RemoveOp, DeleteOp, AuthorityOp])

export type SetOp = typeof SetOp.Type
export type RemoveOp = typeof RemoveOp.Type
export type DeleteOp = typeof DeleteOp.Type
export type AuthorityOp = typeof AuthorityOp.Type
export type Op = typeof Op.Type
export type Data = typeof Data.Type

/** The op kinds, by their `type`. */
export const types: ReadonlyArray<Op["type"]> = ["set", "remove", "delete", "authority"]

const decodeOp = Schema.decodeUnknownResult(Op, { errors: "all", onExcessProperty: "error" })
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const isOpType = (value: unknown): value is Op["type"] => types.includes(value as Op["type"])

/** The issues of one op, with field names relative to the op. */
const issuesOf = (index: number, input: unknown, error: Schema.SchemaError): Array<OpIssue> => {
  if (!Predicate.isObject(input)) {
    return [{ index, field: "", message: `must be an op object with a "type" of ${types.join(", ")}` }]
  }
  // an unknown `type` makes the union report every member; say the one thing that is wrong instead
  if (!isOpType((input as { type?: unknown }).type)) {
    return [{ index, field: "type", message: `must be one of ${types.map((t) => `"${t}"`).join(", ")}` }]
  }
  return formatter(error.issue).issues.map((issue) => ({
    index,
    field: (issue.path ?? []).map((segment) => String(Predicate.isObject(segment) ? segment.key : segment)).join("."),
    message: issue.message
  }))
}

/** Options for `decodeOps`. */
export interface DecodeOptions {
  /** Most ops one submission may carry. Defaults to no limit. */
  readonly maxOps?: number | undefined
}

/**
 * Validates a whole submission: a non-empty array of ops. Fails with `InvalidOp` naming every bad op (index) and
 * field; succeeds only if every op is valid.
 */
export const decodeOps = (
  input: unknown,
  options?: DecodeOptions
): Effect.Effect<ReadonlyArray<Op>, InvalidOp> => {
  if (!Array.isArray(input)) {
    return Effect.fail(new InvalidOp({ issues: [{ field: "ops", message: "must be an array of ops" }] }))
  }
  if (input.length === 0) {
    return Effect.fail(new InvalidOp({ issues: [{ field: "ops", message: "must hold at least one op" }] }))
  }
  const maxOps = options?.maxOps
  if (maxOps !== undefined && input.length > maxOps) {
    return Effect.fail(
      new InvalidOp({ issues: [{ field: "ops", message: `must hold at most ${maxOps} ops, got ${input.length}` }] })
    )
  }
  const ops: Array<Op> = []
  const issues: Array<OpIssue> = []
  for (let index = 0; index < input.length; index++) {
    const result = decodeOp(input[index])
    if (Result.isSuccess(result)) ops.push(result.success)
    else issues.push(...issuesOf(index, input[index], result.failure))
  }
  return issues.length === 0 ? Effect.succeed(ops) : Effect.fail(new InvalidOp({ issues }))
}
