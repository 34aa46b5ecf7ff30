/**
 * Residency: which sectors live in this process, and the one place that decides when a sector comes into being and
 * when it goes away. `SectorHost` asks it for sectors; nothing else creates or ends one.
 *
 * A sector's slot goes `Activating` → `Resident` → `Passivating` → gone, and the rules are:
 * - **One instance per process.** A request for a sector that is activating waits for that activation; one for a
 *   sector that is passivating waits until the old instance has flushed and ended, then activates a new one.
 * - **A failed activation is not kept.** The slot is removed with the failure, so the next request tries again
 *   (until then callers get `SinkUnavailable`).
 * - **A hard cap.** At most `maxActive` slots exist, whatever their state. A sector that needs a place passivates
 *   the least recently used resident sector with no caller and nothing unflushed; if there is none, the request
 *   fails at once with `ResidencyFull`.
 * - **Passivation never loses an op.** Only a sector with no caller and nothing unflushed is passivated (idle for
 *   `passivateAfter`, or evicted for room); one that still holds ops stays resident and keeps retrying, however
 *   long the database is away. Its drain has no deadline: there is nothing left to flush but what a caller gave it
 *   in the instant before, and that must not be dropped.
 * - **A fenced instance is dropped.** Once another owner claimed the sector, the next request loads it anew (a claim
 *   of its own) and reads go to the sink: nobody is served the stale copy.
 * - **Shutdown sees every sector.** `shutdown` stops new requests first (`ShuttingDown`), waits for activations in
 *   progress, then drains every resident and passivating sector within `shutdownTimeout` and reports each one.
 *
 * Slots are kept in least-recently-used order (taking a sector and letting go of it move its slot to the end: `Slots`,
 * a `Map` for the lookup and a list threaded through the slots for the order, so that moving one is a few pointers,
 * not a `Map` delete and insert per submission), so eviction looks at the oldest first, and the sectors nobody holds
 * are in the order they were let go of.
 * Passivation is one sweep for the whole host, not a timer per sector: one sleeping fiber, due when the oldest such
 * sector is; it passivates every sector that is due and sleeps again until the next one is. An idle resident sector
 * costs its slot and nothing that runs; a host with nothing due wakes up for nothing.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { absurd } from "effect/Function"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { ResidencyFull, ShuttingDown, type SinkError, SinkUnavailable } from "../Errors.ts"
import * as Metrics from "../Metrics.ts"
import type * as Sector from "../Sector.ts"

/**
 * Where a slot is in the order (`Slots`, which sets `prev` and `next`): the links of a list threaded through the
 * slots themselves, so that a resident sector pays three fields for its place, not an object of its own.
 */
export interface Links {
  readonly sectorId: number
  prev: Slot | undefined
  next: Slot | undefined
}

export type Slot =
  & (
    | { readonly _tag: "Activating"; readonly done: Deferred.Deferred<void, SinkUnavailable> }
    | {
      readonly _tag: "Resident"
      readonly sector: Sector.Sector
      /** Callers using the sector right now. */
      refs: number
      /** When the last caller let go (ms). */
      lastUsed: number
    }
    | {
      readonly _tag: "Passivating"
      readonly sector: Sector.Sector
      readonly closed: Deferred.Deferred<void>
    }
  )
  & Links

type Resident = Extract<Slot, { readonly _tag: "Resident" }>

/** How residency is run. */
export interface Options {
  readonly maxActive: number
  readonly passivateAfter: Duration.Duration
  readonly shutdownTimeout: Duration.Duration
  /** `Retry-After` hint of `ResidencyFull` and of a failed activation. */
  readonly retryAfterMillis: number
  /** Loads (claims) a sector; it ends with its `drain` or `stop`. */
  readonly activate: (sectorId: number) => Effect.Effect<Sector.Sector, SinkError>
}

/** What a shutdown found: every sector that was resident, with its drain report. */
export interface Drained {
  readonly reports: ReadonlyArray<Sector.DrainReport>
}

/** Why a sector could not be had. */
export type AcquireError = SinkUnavailable | ShuttingDown | ResidencyFull


/**
 * The slots by sector, least recently used first: a `Map` for the lookup and a list through the slots (`Links`) for
 * the order, as a `Map`'s insertion order would keep it (`set` of a new sector puts it at the end, of one already here
 * puts the new slot in the old one's place) but with `touch` moving one to the end in place.
 */
export class Slots {
  private readonly slots = new Map<number, Slot>()
  private head: Slot | undefined = undefined
  private tail: Slot | undefined = undefined

  get size(): number {
    return this.slots.size
  }

  get(sectorId: number): Slot | undefined {
    return this.slots.get(sectorId)
  }

  /** A new sector's slot goes to the end; a sector here has its new slot in the old one's place. */
  set(slot: Slot): void {
    const old = this.slots.get(slot.sectorId)
    this.slots.set(slot.sectorId, slot)
    if (old === undefined) return this.append(slot)
    slot.prev = old.prev
    slot.next = old.next
    if (old.prev === undefined) this.head = slot
    else old.prev.next = slot
    if (old.next === undefined) this.tail = slot
    else old.next.prev = slot
    old.prev = undefined
    old.next = undefined
  }

  delete(sectorId: number): void {
    const slot = this.slots.get(sectorId)
    if (slot === undefined) return
    this.unlink(slot)
    this.slots.delete(sectorId)
  }

  /** Moves a sector's slot to the end: the most recently used. */
  touch(sectorId: number): void {
    const slot = this.slots.get(sectorId)
    if (slot === undefined || slot === this.tail) return
    this.unlink(slot)
    this.append(slot)
  }

  /** Every slot, least recently used first. Do not change the slots while going through them. */
  *[Symbol.iterator](): IterableIterator<Slot> {
    for (let slot = this.head; slot !== undefined; slot = slot.next) yield slot
  }

  private append(slot: Slot): void {
    slot.prev = this.tail
    slot.next = undefined
    if (this.tail === undefined) this.head = slot
    else this.tail.next = slot
    this.tail = slot
  }

  private unlink(slot: Slot): void {
    if (slot.prev === undefined) this.head = slot.next
    else slot.prev.next = slot.next
    if (slot.next === undefined) this.tail = slot.prev
    else slot.next.prev = slot.prev
    slot.prev = undefined
    slot.next = undefined
  }
}

/** The residency of one host; lives as long as the current scope. */
export const make = Effect.fnUntraced(function*(options: Options) {
  const clock = yield* Clock.Clock
  const context = yield* Effect.context<never>()
  const outer = yield* Effect.scope
  // background work (activations, passivations, the sweep) lives in a scope closed after `shutdown`
  const background = yield* Scope.fork(outer, "parallel")
  const slots = new Slots()
  const ttl = Duration.toMillis(options.passivateAfter)
  let accepting = true
  /** Whether the passivation sweep is armed (one sleeping fiber for the host). */
  let sweeping = false
  const now = () => clock.currentTimeMillisUnsafe()
  const spawn = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<void> =>
    Effect.asVoid(Effect.forkIn(effect, background, { startImmediately: true }))

  const unavailable = () =>
    new SinkUnavailable({ retryAfterMillis: options.retryAfterMillis, reason: "the database is unavailable" })

  /** Begins passivating a resident sector: new requests wait for its end, then activate it anew. */
  const passivate = (sectorId: number, slot: Resident): Effect.Effect<Deferred.Deferred<void>> => {
    const closed = Deferred.makeUnsafe<void>()
    slots.set({ _tag: "Passivating", sector: slot.sector, closed, sectorId, prev: undefined, next: undefined })
    return Effect.as(spawn(slot.sector.drain.pipe(
      Effect.ensuring(Effect.sync(() => {
        const current = slots.get(sectorId)
        if (current?._tag === "Passivating" && current.closed === closed) slots.delete(sectorId)
        Deferred.doneUnsafe(closed, Exit.void)
      }))
    )), closed)
  }

  /** Whether a resident sector may be passivated now: no caller, nothing unflushed (or fenced: it holds nothing). */
  const idle = (slot: Resident) => slot.refs === 0 && (slot.sector.unflushed() === 0 || slot.sector.phase() === "fenced")

  /** The oldest resident sector nobody holds (they are in the order they were let go of). */
  const oldestUnheld = (): Resident | undefined => {
    for (const slot of slots) if (slot._tag === "Resident" && slot.refs === 0) return slot
    return undefined
  }

  /**
   * Arms the passivation sweep unless it is armed: one fiber that sleeps until the oldest unheld sector is due,
   * passivates every sector that is due, and ends when no sector is left unheld.
   */
  const armSweep = (): Effect.Effect<void> => {
    if (sweeping || !Number.isFinite(ttl)) return Effect.void
    sweeping = true
    return spawn(Effect.gen(function*() {
      while (true) {
        const slot = oldestUnheld()
        if (slot === undefined) return
        const sectorId = slot.sectorId
        const wait = slot.lastUsed + ttl - now()
        if (wait > 0) {
          yield* Effect.sleep(wait)
          continue
        }
        if (idle(slot)) {
          Metrics.passivations.updateUnsafe(1, context)
          yield* passivate(sectorId, slot)
        } else {
          // still flushing (the database may be away): stay resident, look again a whole period later
          slot.lastUsed = now()
          slots.touch(sectorId)
        }
      }
    }).pipe(Effect.ensuring(Effect.sync(() => void (sweeping = false)))))
  }

  /** The least recently used resident sector that can go. */
  const victim = (): Resident | undefined => {
    for (const slot of slots) if (slot._tag === "Resident" && idle(slot)) return slot
    return undefined
  }

  /** Starts activating a sector that has no slot, making room first if the cap is reached. */
  const begin = (sectorId: number): Effect.Effect<void, ResidencyFull> => {
    if (slots.size >= options.maxActive) {
      const found = victim()
      if (found === undefined) {
        Metrics.refusedBy.ResidencyFull.updateUnsafe(1, context)
        return Effect.fail(
          new ResidencyFull({ sectorId, maxActiveSectors: options.maxActive, retryAfterMillis: options.retryAfterMillis })
        )
      }
      Metrics.evictions.updateUnsafe(1, context)
      return Effect.flatMap(passivate(found.sectorId, found), Deferred.await)
    }
    const done = Deferred.makeUnsafe<void, SinkUnavailable>()
    slots.set({ _tag: "Activating", done, sectorId, prev: undefined, next: undefined })
    return spawn(Effect.gen(function*() {
      const built = yield* Effect.exit(options.activate(sectorId))
      if (Exit.isSuccess(built)) {
        slots.set({
          _tag: "Resident",
          sector: built.value,
          refs: 0,
          lastUsed: now(),
          sectorId,
          prev: undefined,
          next: undefined
        })
        Deferred.doneUnsafe(done, Exit.void)
        return
      }
      slots.delete(sectorId)
      yield* Effect.logWarning(`sector ${sectorId}: cannot activate`, built.cause)
      Deferred.doneUnsafe(done, Exit.fail(unavailable()))
    }).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          if (slots.get(sectorId)?._tag === "Activating") slots.delete(sectorId)
          Deferred.doneUnsafe(done, Exit.fail(unavailable()))
        })
      )
    ))
  }

  /** Takes a reference to a sector, activating it if it has no slot. Pair with `release`. */
  const acquire = (sectorId: number): Effect.Effect<Sector.Sector, AcquireError> =>
    Effect.suspend((): Effect.Effect<Sector.Sector, AcquireError> => {
      if (!accepting) return Effect.fail(new ShuttingDown({ sectorId }))
      const slot = slots.get(sectorId)
      if (slot === undefined) return Effect.andThen(begin(sectorId), acquire(sectorId))
      switch (slot._tag) {
        case "Resident":
          // fenced by another owner: drop this instance and load the sector anew (a claim of its own)
          return isFenced(slot)
            ? Effect.flatMap(passivate(sectorId, slot), (closed) => Effect.andThen(Deferred.await(closed), acquire(sectorId)))
            : Effect.succeed(hold(sectorId, slot))
        case "Activating":
          return Effect.andThen(Deferred.await(slot.done), acquire(sectorId))
        case "Passivating":
          return Effect.andThen(Deferred.await(slot.closed), acquire(sectorId))
        default:
          return absurd(slot)
      }
    })

  /** A resident instance another owner fenced, that no caller holds any more. */
  const isFenced = (slot: Resident) => slot.refs === 0 && slot.sector.phase() === "fenced"

  /** Takes a reference to a resident sector. */
  const hold = (sectorId: number, slot: Resident) => {
    slot.refs++
    slots.touch(sectorId)
    return slot.sector
  }

  /**
   * Lets go of a reference; a sector nobody uses goes to the end of the order and is seen by the sweep, a fenced
   * one is passivated at once.
   */
  const release = (sectorId: number, sector: Sector.Sector): Effect.Effect<void> =>
    Effect.suspend(() => {
      const slot = slots.get(sectorId)
      if (slot?._tag !== "Resident" || slot.sector !== sector) return Effect.void
      slot.refs--
      slot.lastUsed = now()
      if (slot.refs > 0) return Effect.void
      if (sector.phase() === "fenced") return Effect.asVoid(passivate(sectorId, slot))
      slots.touch(sectorId)
      return armSweep()
    })

  /**
   * Runs `f` with the sector, activating it if needed. A resident sector is held and let go around `f` without
   * `acquireUseRelease`'s machinery: holding it does not yield, so nothing can come between it and `ensuring`.
   */
  const use = <A, E>(sectorId: number, f: (sector: Sector.Sector) => Effect.Effect<A, E>) =>
    Effect.suspend((): Effect.Effect<A, E | AcquireError> => {
      const slot = slots.get(sectorId)
      if (accepting && slot?._tag === "Resident" && !isFenced(slot)) {
        const sector = hold(sectorId, slot)
        return Effect.ensuring(f(sector), release(sectorId, sector))
      }
      return Effect.acquireUseRelease(acquire(sectorId), f, (sector) => release(sectorId, sector))
    })

  /**
   * The sector if it is resident now and takes work (not fenced, not shutting down), counted as used now, as `use`
   * counts it: for callers that do something synchronous with it. `undefined` otherwise.
   */
  const residentNow = (sectorId: number): Sector.Sector | undefined => {
    const slot = slots.get(sectorId)
    if (!accepting || slot?._tag !== "Resident" || slot.sector.phase() !== "running") return undefined
    // as `hold` and `release` back to back; the sweep is armed already: the sector was let go of before
    slot.lastUsed = now()
    slots.touch(sectorId)
    return slot.sector
  }

  /**
   * Runs `f` with the sector if it is resident (waiting out an activation or passivation in progress), or `f` with
   * `None` if it is not. Never activates. A fenced instance counts as not resident (its memory is stale: read what
   * the owner made durable) unless `fenced` is `"resident"`: a flush must hear that what the instance accepted is
   * lost, not the new owner's watermark (letting go of it then drops the instance).
   */
  const peek = <A, E>(
    sectorId: number,
    f: (sector: Option.Option<Sector.Sector>) => Effect.Effect<A, E>,
    fenced: "absent" | "resident" = "absent"
  ): Effect.Effect<A, E | ShuttingDown> =>
    Effect.suspend((): Effect.Effect<A, E | ShuttingDown> => {
      if (!accepting) return Effect.fail(new ShuttingDown({ sectorId }))
      const slot = slots.get(sectorId)
      if (slot === undefined) return f(Option.none())
      switch (slot._tag) {
        case "Resident": {
          if (fenced === "absent" && slot.sector.phase() === "fenced") return f(Option.none())
          const sector = hold(sectorId, slot)
          return Effect.ensuring(f(Option.some(sector)), release(sectorId, sector))
        }
        case "Activating":
          return Effect.andThen(Effect.exit(Deferred.await(slot.done)), peek(sectorId, f, fenced))
        case "Passivating":
          return Effect.andThen(Deferred.await(slot.closed), peek(sectorId, f, fenced))
        default:
          return absurd(slot)
      }
    })

  /**
   * Lets a sector go from this process (its shard moved to another host): it drains its mailbox and flushes
   * everything, with no deadline — while the database is away it keeps retrying, since the next owner must find every
   * accepted op durable — and is then dropped. Waits for an activation or passivation in progress first. A later
   * request activates it anew. Nothing to do for a sector that is not here.
   */
  const handOff = (sectorId: number): Effect.Effect<void> =>
    Effect.suspend((): Effect.Effect<void> => {
      const slot = slots.get(sectorId)
      if (slot === undefined) return Effect.void
      switch (slot._tag) {
        case "Resident":
          return Effect.flatMap(passivate(sectorId, slot), Deferred.await)
        case "Activating":
          return Effect.andThen(Effect.exit(Deferred.await(slot.done)), handOff(sectorId))
        case "Passivating":
          return Deferred.await(slot.closed)
        default:
          return absurd(slot)
      }
    })

  /** The sectors living here (resident or passivating), least recently used first. */
  const sectors = (): Array<Sector.Sector> => {
    const found: Array<Sector.Sector> = []
    for (const slot of slots) if (slot._tag !== "Activating") found.push(slot.sector)
    return found
  }

  const shutdownOnce = Effect.gen(function*() {
    accepting = false
    for (const slot of [...slots]) {
      if (slot._tag === "Activating") yield* Effect.exit(Deferred.await(slot.done))
    }
    const held = [...slots].filter((slot): slot is Exclude<Slot, { _tag: "Activating" }> => slot._tag !== "Activating")
    yield* Effect.forEach(held, (slot) => slot.sector.drain, { concurrency: "unbounded", discard: true }).pipe(
      Effect.timeoutOption(options.shutdownTimeout)
    )
    const reports = yield* Effect.forEach(held, (slot) => slot.sector.stop, { concurrency: "unbounded" })
    for (const slot of held) {
      slots.delete(slot.sectorId)
      if (slot._tag === "Passivating") Deferred.doneUnsafe(slot.closed, Exit.void)
    }
    return { reports } satisfies Drained
  })
  const shutdown = yield* Effect.cached(shutdownOnce)

  return {
    use,
    residentNow,
    peek,
    handOff,
    sectors,
    shutdown,
    /** Whether new requests are taken (false once shutdown began). */
    accepting: () => accepting,
    /** Slots in use (activating, resident or passivating): never more than `maxActive`. */
    size: () => slots.size,
    maxActive: options.maxActive
  }
})

/** A host's residency. */
export type Residency = Effect.Success<ReturnType<typeof make>>
