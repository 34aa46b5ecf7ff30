/**
 * GroupCommit on a fake commit (no database), on the TestClock: how groups are formed and bounded, how many
 * commits run at once, how each item is answered (the fallback after a group failure included), and the items
 * held over from one group to the next.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Data, Effect, Exit, Fiber, Layer, Logger, Option } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { GroupCommit } from "../src/index.ts"

/** A fake item: its key (a sector), its size in rows and what the fake commit does with it. */
interface Item {
  readonly id: number
  readonly key: number
  readonly rows: number
  /** `refused`: answered with its own error; `poison`: fails any group it is in (a data error). */
  readonly fate: "ok" | "refused" | "poison"
}

class Refused extends Data.TaggedError("Refused")<{ readonly id: number }> {}
class Broken extends Data.TaggedError("Broken")<{ readonly transient: boolean }> {}

/** When `submitAll` starts submitting, in TestClock millis; commit times are counted from it. */
const origin = 1

/** One call of the fake commit. */
interface Commit {
  readonly ids: ReadonlyArray<number>
  /** Millis since `origin`. */
  readonly at: number
  failed: boolean
}

interface Setup extends Partial<Omit<GroupCommit.Options<Item, number, Refused | Broken, never>, "commit">> {
  /** How long each commit takes (TestClock); by the commit's index. */
  readonly commitMillis?: (index: number) => number
  /** How a group containing a poison item fails. */
  readonly poison?: "data" | "transient" | "defect"
}

/** A group commit (one writer, no bounds unless `options` says otherwise) on a fake commit that records every call. */
const setup = (options: Setup = {}) =>
  Effect.gen(function*() {
    const commits: Array<Commit> = []
    let inFlight = 0
    let maxInFlight = 0
    let fallbacks = 0
    const commit = (group: ReadonlyArray<Item>) =>
      Effect.gen(function*() {
        const at = (yield* Clock.currentTimeMillis) - origin
        const call: Commit = { ids: group.map((item) => item.id), at, failed: true }
        commits.push(call)
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        yield* Effect.sleep(options.commitMillis?.(commits.length - 1) ?? 10)
        if (group.some((item) => item.fate === "poison")) {
          if (options.poison === "defect") return yield* Effect.die("the driver broke")
          return yield* Effect.fail(new Broken({ transient: options.poison === "transient" }))
        }
        call.failed = false
        return group.map((item) =>
          item.fate === "refused" ? Exit.fail(new Refused({ id: item.id })) : Exit.succeed(item.id * 10)
        )
      }).pipe(Effect.ensuring(Effect.sync(() => inFlight--)))
    const groups = yield* GroupCommit.make({
      commit,
      rows: (item) => item.rows,
      key: (item) => item.key,
      fallback: (error) => error._tag === "Broken" && !error.transient,
      onFallback: () => fallbacks++,
      writers: 1,
      maxGroupRows: Number.POSITIVE_INFINITY,
      maxGroupItems: Number.POSITIVE_INFINITY,
      groupWindow: 0,
      ...options
    })
    /**
     * Submits `items` in order, each `delays[i]` ms (default 0) after the start, those of one moment from one fiber
     * the TestClock wakes (so that they are queued at the same moment, and `TestClock.adjust` follows everything they
     * set off before it moves time on); runs the clock until every item is answered and returns the answers.
     */
    const submitAll = (items: ReadonlyArray<Item>, delays?: ReadonlyArray<number>) =>
      Effect.gen(function*() {
        const moments = new Map<number, Array<number>>()
        items.forEach((_, i) => {
          const delay = delays?.[i] ?? 0
          moments.set(delay, [...(moments.get(delay) ?? []), i])
        })
        const fibers = yield* Effect.forEach(moments, ([delay, indexes]) =>
          Effect.forkChild(Effect.delay(
            Effect.forEach(indexes, (i) => Effect.map(Effect.exit(groups.submit(items[i]!)), (exit) => [i, exit] as const), {
              concurrency: "unbounded"
            }),
            origin + delay
          )))
        yield* TestClock.adjust(60_000)
        assert.isTrue(fibers.every((fiber) => fiber.pollUnsafe() !== undefined), "items never answered")
        const exits = new Array<Exit.Exit<number, Refused | Broken>>(items.length)
        for (const [i, exit] of (yield* Fiber.joinAll(fibers)).flat()) exits[i] = exit
        return exits
      })
    return {
      submitAll,
      commits,
      groupsOf: () => commits.map((call) => call.ids),
      maxInFlight: () => maxInFlight,
      fallbacks: () => fallbacks
    }
  })

const item = (id: number, options: Partial<Omit<Item, "id">> = {}): Item => ({
  id,
  key: options.key ?? id,
  rows: options.rows ?? 1,
  fate: options.fate ?? "ok"
})

/** An item's answer in words: its value, its error or a defect. */
const answerOf = (exit: Exit.Exit<number, Refused | Broken>): string => {
  if (Exit.isSuccess(exit)) return `${exit.value}`
  const error = Option.getOrUndefined(Cause.findErrorOption(exit.cause))
  if (error === undefined) return Cause.hasDies(exit.cause) ? "defect" : Cause.pretty(exit.cause)
  return error._tag === "Refused" ? `refused ${error.id}` : error.transient ? "transient" : "broken"
}

describe("GroupCommit", () => {
  it.effect("commits the items queued at the same moment as one group and answers each with its own answer", () =>
    Effect.gen(function*() {
      const { groupsOf, submitAll } = yield* setup()
      const exits = yield* submitAll([item(1), item(2, { fate: "refused" }), item(3), item(4)])
      assert.deepStrictEqual(groupsOf(), [[1, 2, 3, 4]])
      assert.deepStrictEqual(exits.map(answerOf), ["10", "refused 2", "30", "40"])
    }))

  it.effect("stops taking items at maxGroupItems and leaves the rest to the next groups", () =>
    Effect.gen(function*() {
      const { groupsOf, submitAll } = yield* setup({ maxGroupItems: 3 })
      yield* submitAll([1, 2, 3, 4, 5, 6, 7].map((id) => item(id)))
      assert.deepStrictEqual(groupsOf(), [[1, 2, 3], [4, 5, 6], [7]])
    }))

  it.effect("stops taking items once a group holds maxGroupRows rows, and never splits an item", () =>
    Effect.gen(function*() {
      const { groupsOf, submitAll } = yield* setup({ maxGroupRows: 4 })
      yield* submitAll([item(1, { rows: 2 }), item(2, { rows: 3 }), item(3, { rows: 9 }), item(4), item(5)])
      // 2 rows leave room, 5 do not; an item over the bound goes alone and whole
      assert.deepStrictEqual(groupsOf(), [[1, 2], [3], [4, 5]])
    }))

  it.effect("waits groupWindow for more items before it commits a group", () =>
    Effect.gen(function*() {
      const { commits, submitAll } = yield* setup({ groupWindow: "10 millis", commitMillis: () => 0 })
      yield* submitAll([item(1), item(2), item(3)], [0, 5, 15])
      assert.deepStrictEqual(commits.map((call) => [call.ids, call.at]), [[[1, 2], 10], [[3], 25]])
    }))

  it.effect("runs at most `writers` commits at once and keeps them all busy", () =>
    Effect.gen(function*() {
      const { commits, maxInFlight, submitAll } = yield* setup({ writers: 2, maxGroupItems: 1, commitMillis: () => 100 })
      yield* submitAll([1, 2, 3, 4, 5].map((id) => item(id)))
      assert.strictEqual(maxInFlight(), 2)
      assert.deepStrictEqual(commits.map((call) => call.at), [0, 0, 100, 100, 200])
    }))

  it.effect("never puts two items of one key in a group: the later ones wait for the next groups, in order", () =>
    Effect.gen(function*() {
      const { groupsOf, submitAll } = yield* setup()
      yield* submitAll([item(1, { key: 0 }), item(2, { key: 1 }), item(3, { key: 0 }), item(4, { key: 0 }), item(5, { key: 2 })])
      assert.deepStrictEqual(groupsOf(), [[1, 2, 5], [3], [4]])
    }))

  it.effect("takes held-over items before newer ones, within the group's item bound", () =>
    Effect.gen(function*() {
      const { groupsOf, submitAll } = yield* setup({ maxGroupItems: 2 })
      yield* submitAll([item(1, { key: 0 }), item(2, { key: 0 }), item(3, { key: 1 }), item(4, { key: 2 }), item(5, { key: 3 })])
      assert.deepStrictEqual(groupsOf(), [[1, 3], [2, 4], [5]])
    }))

  it.effect("takes held-over items before newer ones, within the group's row bound", () =>
    Effect.gen(function*() {
      const { groupsOf, submitAll } = yield* setup({ maxGroupRows: 3 })
      // the first group takes 1, 3 and 5 (3 rows, full) and holds over 2 and 4 (same keys as 1 and 3), ten rows
      // each: the next group is full with 2, so 4 is held over again, and 6 (queued) waits behind it
      yield* submitAll([
        item(1, { key: 0 }),
        item(2, { key: 0, rows: 10 }),
        item(3, { key: 1 }),
        item(4, { key: 1, rows: 10 }),
        item(5, { key: 2 }),
        item(6, { key: 3 })
      ])
      assert.deepStrictEqual(groupsOf(), [[1, 3, 5], [2], [4], [6]])
    }))

  it.effect("commits each item of a group that failed on its data alone, so only the item at fault gets the error", () =>
    Effect.gen(function*() {
      const { fallbacks, groupsOf, submitAll } = yield* setup()
      const exits = yield* submitAll([item(1), item(2, { fate: "poison" }), item(3, { fate: "refused" }), item(4)])
      assert.deepStrictEqual(groupsOf(), [[1, 2, 3, 4], [1], [2], [3], [4]])
      assert.strictEqual(fallbacks(), 1)
      assert.deepStrictEqual(exits.map(answerOf), ["10", "broken", "refused 3", "40"])
    }))

  it.effect("hands an error the fallback refuses (a transient one) to every item of the group, without retrying", () =>
    Effect.gen(function*() {
      const { fallbacks, groupsOf, submitAll } = yield* setup({ poison: "transient" })
      const exits = yield* submitAll([item(1), item(2, { fate: "poison" }), item(3)])
      assert.deepStrictEqual(groupsOf(), [[1, 2, 3]])
      assert.strictEqual(fallbacks(), 0)
      assert.deepStrictEqual(exits.map(answerOf), ["transient", "transient", "transient"])
    }))

  it.effect("hands a defect in a commit to every item of the group, without retrying", () =>
    Effect.gen(function*() {
      const { groupsOf, submitAll } = yield* setup({ poison: "defect" })
      const exits = yield* submitAll([item(1), item(2, { fate: "poison" })])
      assert.deepStrictEqual(groupsOf(), [[1, 2]])
      assert.deepStrictEqual(exits.map(answerOf), ["defect", "defect"])
    }))

  it.effect("does not retry a group of one item that failed on its data", () =>
    Effect.gen(function*() {
      const { fallbacks, groupsOf, submitAll } = yield* setup()
      const exits = yield* submitAll([item(1, { fate: "poison" })])
      assert.deepStrictEqual(groupsOf(), [[1]])
      assert.strictEqual(fallbacks(), 0)
      assert.deepStrictEqual(exits.map(answerOf), ["broken"])
    }))

  it("answers every item once with its own answer, keeps every group within its bounds and takes each key's items in order", async () => {
    const scenario = fc.record({
      items: fc.array(
        fc.record({
          key: fc.integer({ min: 0, max: 3 }),
          rows: fc.integer({ min: 1, max: 8 }),
          fate: fc.constantFrom("ok", "ok", "ok", "ok", "refused", "poison"),
          // many at the same moment, so that groups fill up and items are held over
          at: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 30 }))
        }),
        { minLength: 1, maxLength: 40, size: "medium" }
      ),
      writers: fc.integer({ min: 1, max: 3 }),
      maxGroupRows: fc.integer({ min: 1, max: 12 }),
      maxGroupItems: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constant(Number.POSITIVE_INFINITY)),
      groupWindow: fc.integer({ min: 0, max: 4 }),
      commitMillis: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 10 })
    })
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const items = s.items.map(({ fate, key, rows }, id): Item => ({ id, key, rows, fate }))
        const run = Effect.gen(function*() {
          const { commits, fallbacks, submitAll } = yield* setup({
            writers: s.writers,
            maxGroupRows: s.maxGroupRows,
            maxGroupItems: s.maxGroupItems,
            groupWindow: s.groupWindow,
            commitMillis: (index) => s.commitMillis[index % s.commitMillis.length]!
          })
          const exits = yield* submitAll(items, s.items.map((i) => i.at))

          // each item is answered with its own answer
          assert.deepStrictEqual(
            exits.map(answerOf),
            items.map((item) => item.fate === "ok" ? `${item.id * 10}` : item.fate === "refused" ? `refused ${item.id}` : "broken")
          )
          // each item is in exactly one commit that succeeded (a poison one in none)
          const committed = commits.filter((call) => !call.failed).flatMap((call) => call.ids)
          assert.deepStrictEqual(
            [...committed].sort((a, b) => a - b),
            items.filter((item) => item.fate !== "poison").map((item) => item.id)
          )
          assert.strictEqual(fallbacks(), commits.filter((call) => call.failed && call.ids.length > 1).length)
          // every group within its bounds, its keys distinct
          for (const { ids } of commits) {
            const group = ids.map((id) => items[id]!)
            assert.isAtMost(group.length, s.maxGroupItems, `group ${ids}`)
            assert.isBelow(group.slice(0, -1).reduce((sum, item) => sum + item.rows, 0), group.length > 1 ? s.maxGroupRows : Infinity, `group ${ids}`)
            assert.strictEqual(new Set(group.map((item) => item.key)).size, group.length, `group ${ids}`)
          }
          // with one writer, groups are committed as they are formed: each key's items in the order they came
          if (s.writers === 1) {
            const arrival = [...items].sort((a, b) => s.items[a.id]!.at - s.items[b.id]!.at || a.id - b.id)
            const firstCommit = new Map<number, number>()
            commits.forEach((call, index) => {
              for (const id of call.ids) if (!firstCommit.has(id)) firstCommit.set(id, index)
            })
            for (let key = 0; key <= 3; key++) {
              const order = arrival.filter((item) => item.key === key).map((item) => firstCommit.get(item.id)!)
              assert.deepStrictEqual(order, [...order].sort((a, b) => a - b), `key ${key}`)
            }
          }
        })
        await Effect.runPromise(Effect.scoped(run).pipe(Effect.provide(Layer.merge(TestClock.layer(), Logger.layer([])))))
      }),
      { numRuns: 200 }
    )
  })
})
