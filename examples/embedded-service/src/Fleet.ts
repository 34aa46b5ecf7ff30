/**
 * The example's own domain: ships moving through the sectors of a world. A ship is an entity of its sector and its
 * position one component of it, so a ship that moves ten times between two flushes costs one row write. `Fleet` is
 * the only module of the service that speaks in ops: it turns a move into an op and an entity back into a position.
 */
import { type Errors, type Sector, SectorHost } from "@sectors/core"
import { Context, Effect, Layer, Option, Schema } from "effect"

/** Where a ship is. */
export const Position = Schema.Struct({ x: Schema.Finite, y: Schema.Finite })
export type Position = typeof Position.Type

/** Why a move was not taken: the runtime's refusals (`MailboxFull`, `BufferFull`, `SinkUnavailable`…). */
export type MoveError = Sector.SubmitError | Errors.ResidencyFull | Errors.SinkUnavailable

/** Why a ship could not be located (its sector's sink is unavailable, or the host is shutting down). */
export type LocateError = SectorHost.ActivationError

export class Fleet extends Context.Service<Fleet, {
  /**
   * Moves a ship and returns the move's seq in its sector. With `durable`, answers once the move is in the
   * database; otherwise once it is accepted (readable at once, persisted within the batch policy's `maxWait`).
   */
  readonly move: (
    sector: number,
    ship: number,
    to: Position,
    options?: { readonly durable?: boolean | undefined }
  ) => Effect.Effect<number, MoveError>
  /** Where a ship is: from memory while its sector is resident, from the database otherwise. */
  readonly locate: (sector: number, ship: number) => Effect.Effect<Option.Option<Position>, LocateError>
}>()("embedded-service/Fleet") {}

const component = "position"
const decodePosition = Schema.decodeUnknownOption(Position)

/** The fleet on the `SectorHost` in context. */
export const layer: Layer.Layer<Fleet, never, SectorHost.SectorHost> = Layer.effect(
  Fleet,
  Effect.gen(function*() {
    const host = yield* SectorHost.SectorHost
    return Fleet.of({
      move: Effect.fn("Fleet.move")(function*(sector, ship, to, options) {
        const accepted = yield* host.submit(
          sector,
          [{ type: "set", entity: ship, component, data: { x: to.x, y: to.y } }],
          { ack: options?.durable === true ? "durable" : "accepted" }
        )
        return accepted.lastSeq
      }),
      locate: Effect.fn("Fleet.locate")(function*(sector, ship) {
        const entity = yield* host.get(sector, ship)
        return Option.flatMap(entity, (view) => decodePosition(view.components[component]))
      })
    })
  })
)
