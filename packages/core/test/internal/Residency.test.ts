import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Option } from "effect"
import * as fc from "fast-check"
import { TestClock } from "effect/testing"
import type { Sector } from "../../src/index.ts"
import * as Residency from "../../src/internal/residency.ts"

/** A stand-in sector whose drain waits for `gate`: a passivation that takes as long as the test wants. */
const fakeSector = (sectorId: number, gate: Deferred.Deferred<void>): Sector.Sector => {
  const report = { sectorId, flushed: 0, unflushed: 0 }
  return {
    sectorId,
    submit: () => Effect.die("unused"),
    get: () => Effect.succeed(Option.none()),
    stats: Effect.die("unused"),
    flush: Effect.succeed(0),
    drain: Effect.as(Deferred.await(gate), report),
    stop: Effect.succeed(report),
    phase: () => "running",
    unflushed: () => 0,
    tryAccept: () => undefined,
    tryAcceptDurable: () => undefined
  }
}

describe("Residency", () => {
  it.effect("never holds two instances of a sector: a request during passivation waits for the old one's end", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const instances: Array<Sector.Sector> = []
      const residency = yield* Residency.make({
        maxActive: 10,
        passivateAfter: Duration.seconds(1),
        shutdownTimeout: Duration.seconds(1),
        retryAfterMillis: 1000,
        activate: (sectorId) => Effect.sync(() => {
          const sector = fakeSector(sectorId, gate)
          instances.push(sector)
          return sector
        })
      })
      const first = yield* residency.use(1, Effect.succeed)
      yield* TestClock.adjust(Duration.seconds(1))
      // passivation began and is stuck in the drain: a new request must wait, not activate a second instance
      const second = yield* Effect.forkChild(residency.use(1, Effect.succeed))
      yield* Effect.yieldNow
      assert.strictEqual(instances.length, 1)
      assert.isUndefined(second.pollUnsafe())
      yield* Deferred.succeed(gate, undefined)
      const next = yield* Fiber.join(second)
      assert.strictEqual(instances.length, 2)
      assert.notStrictEqual(next, first)
      assert.strictEqual(residency.size(), 1)
    }).pipe(Effect.scoped))

  it.effect("passivates by last use, not by first: a sector held long is due a whole period after it was let go", () =>
    Effect.gen(function*() {
      const open = yield* Deferred.make<void>()
      yield* Deferred.succeed(open, undefined)
      const residency = yield* Residency.make({
        maxActive: 10,
        passivateAfter: Duration.seconds(60),
        shutdownTimeout: Duration.seconds(1),
        retryAfterMillis: 1000,
        activate: (sectorId) => Effect.sync(() => fakeSector(sectorId, open))
      })
      const resident = () => residency.sectors().map((sector) => sector.sectorId).sort()
      const letGo = yield* Deferred.make<void>()
      // t = 0: sector 1 is taken and held until t = 40 s
      const held = yield* Effect.forkChild(residency.use(1, () => Deferred.await(letGo)), { startImmediately: true })
      yield* TestClock.adjust(Duration.seconds(10))
      yield* residency.use(2, Effect.succeed) // t = 10 s: taken and let go at once
      yield* TestClock.adjust(Duration.seconds(30))
      yield* Deferred.succeed(letGo, undefined) // t = 40 s
      yield* Fiber.join(held)
      yield* TestClock.adjust(Duration.seconds(31)) // t = 71 s: 2 is due (10 + 60), 1 is not (40 + 60)
      yield* Effect.yieldNow
      assert.deepStrictEqual(resident(), [1])
      yield* TestClock.adjust(Duration.seconds(30)) // t = 101 s
      yield* Effect.yieldNow
      assert.deepStrictEqual(resident(), [])
    }).pipe(Effect.scoped))

  it.effect("a request for a sector being activated shares that activation", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let activations = 0
      const residency = yield* Residency.make({
        maxActive: 10,
        passivateAfter: Duration.infinity,
        shutdownTimeout: Duration.seconds(1),
        retryAfterMillis: 1000,
        activate: (sectorId) =>
          Effect.andThen(Deferred.await(gate), Effect.sync(() => (activations++, fakeSector(sectorId, gate))))
      })
      const a = yield* Effect.forkChild(residency.use(1, Effect.succeed))
      const b = yield* Effect.forkChild(residency.use(1, Effect.succeed))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      const [x, y] = [yield* Fiber.join(a), yield* Fiber.join(b)]
      assert.strictEqual(x, y)
      assert.strictEqual(activations, 1)
      assert.deepStrictEqual(yield* Effect.exit(residency.shutdown), Exit.succeed({ reports: [{ sectorId: 1, flushed: 0, unflushed: 0 }] }))
    }).pipe(Effect.scoped))
})

describe("Residency.Slots", () => {
  type Command =
    | { readonly _tag: "set"; readonly sectorId: number; readonly slot: number }
    | { readonly _tag: "delete" | "touch"; readonly sectorId: number }
  const command: fc.Arbitrary<Command> = fc.oneof(
    fc.record({ _tag: fc.constant("set" as const), sectorId: fc.nat(7), slot: fc.nat() }),
    fc.record({ _tag: fc.constantFrom("delete" as const, "touch" as const), sectorId: fc.nat(7) })
  )

  it("keeps the order a Map would with touch as delete and set: new at the end, a set in place, a touch to the end", () => {
    fc.assert(fc.property(fc.array(command, { maxLength: 60 }), (commands) => {
      const slots = new Residency.Slots()
      const model = new Map<number, Residency.Slot>()
      // stand-in slots: the structure only reads and writes their links
      const slotOf = (sectorId: number, n: number) =>
        ({ _tag: "Activating", done: n, sectorId, prev: undefined, next: undefined }) as unknown as Residency.Slot
      for (const c of commands) {
        switch (c._tag) {
          case "set": {
            const slot = slotOf(c.sectorId, c.slot)
            slots.set(slot)
            model.set(c.sectorId, slot)
            break
          }
          case "delete":
            slots.delete(c.sectorId)
            model.delete(c.sectorId)
            break
          case "touch": {
            slots.touch(c.sectorId)
            const slot = model.get(c.sectorId)
            if (slot !== undefined) {
              model.delete(c.sectorId)
              model.set(c.sectorId, slot)
            }
            break
          }
        }
        assert.deepStrictEqual([...slots].map((slot) => slot.sectorId), [...model.keys()])
        assert.isTrue([...slots].every((slot, i) => slot === [...model.values()][i]))
        assert.strictEqual(slots.size, model.size)
        for (let id = 0; id < 8; id++) assert.strictEqual(slots.get(id), model.get(id))
      }
    }))
  })
})
