/**
 * The service's HTTP API, as routes on effect's `HttpRouter`:
 *
 * - `PUT /sectors/:sector/ships/:ship/position` with `{"x": 1, "y": 2}` moves a ship: `200 {"seq": 3}` once the
 *   move is accepted, or, with `?durable=true`, once it is in the database.
 * - `GET /sectors/:sector/ships/:ship` answers `200 {"x": 1, "y": 2}`, or `404` for a ship never moved.
 *
 * A malformed id or body is a `400`; a refusal of the runtime (a full mailbox or buffer, the database away) a `503`
 * that names it, with `retry-after`, so that a client backs off and retries.
 */
import { Effect, Layer, Option, Schema } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { Fleet, Position } from "./Fleet.ts"

const Id = Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))

const ShipParams = Schema.Struct({ sector: Id, ship: Id })

const MoveParams = Schema.Struct({ ...ShipParams.fields, durable: Schema.optional(Schema.Literals(["true", "false"])) })

const badRequest = (error: { readonly message: string }) =>
  Effect.succeed(HttpServerResponse.jsonUnsafe({ error: "BadRequest", message: error.message }, { status: 400 }))

const refused = (error: { readonly _tag: string; readonly message: string }) =>
  Effect.succeed(HttpServerResponse.jsonUnsafe(
    { error: error._tag, message: error.message },
    { status: 503, headers: { "retry-after": "1" } }
  ))

const move = Effect.gen(function*() {
  const fleet = yield* Fleet
  const { sector, ship, durable } = yield* HttpRouter.schemaParams(MoveParams)
  const to = yield* HttpServerRequest.schemaBodyJson(Position)
  const seq = yield* fleet.move(sector, ship, to, { durable: durable === "true" })
  return HttpServerResponse.jsonUnsafe({ seq })
}).pipe(
  Effect.catchTags({ SchemaError: badRequest, HttpServerError: badRequest }),
  Effect.catch(refused)
)

const locate = Effect.gen(function*() {
  const fleet = yield* Fleet
  const { sector, ship } = yield* HttpRouter.schemaPathParams(ShipParams)
  const position = yield* fleet.locate(sector, ship)
  return Option.match(position, {
    onNone: () => HttpServerResponse.jsonUnsafe({ error: "NotFound" }, { status: 404 }),
    onSome: (position) => HttpServerResponse.jsonUnsafe(position)
  })
}).pipe(
  Effect.catchTags({ SchemaError: badRequest }),
  Effect.catch(refused)
)

/** The routes, for `HttpRouter.serve`; they need a `Fleet`. */
export const layer = Layer.mergeAll(
  HttpRouter.add("PUT", "/sectors/:sector/ships/:ship/position", move),
  HttpRouter.add("GET", "/sectors/:sector/ships/:ship", locate)
)
