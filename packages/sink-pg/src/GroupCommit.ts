/**
 * Group commit, independent of what is committed: items that callers queue at about the same moment are committed
 * together, a group per commit, by a fixed number of writers, and every caller is answered on its own. The sink
 * commits its batches through it (`SinkPg`); the unit tests drive it with a fake commit.
 *
 * - **Groups**: one writer at a time gathers a group (so that items due at the same moment end up in one commit
 *   instead of being split between idle writers). It takes what is queued — after waiting `groupWindow`, if set —
 *   and stops taking items once the group holds `maxGroupRows` rows or `maxGroupItems` items; an item is never
 *   split, so the last one may carry a group past `maxGroupRows`.
 * - **Keys**: two items of one key never share a group. The second is held over and taken first by the next
 *   group, within that group's bounds like any other, so the items of a key are taken in the order they came.
 * - **Writers**: `writers` groups are committed at once; a writer gathers its next group when its commit is done.
 * - **Answers**: a commit answers each item of its group. A group that fails with an error `fallback` accepts is
 *   committed again one item per commit, so that the error reaches only the items at fault; any other failure
 *   (and any defect) reaches every item of the group.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"

/** What `make` commits and how it forms groups. */
export interface Options<Item, A, E, R> {
  /**
   * Commits a group (no two items of one key); succeeds with one answer per item, in the group's order, or fails
   * for the whole group.
   */
  readonly commit: (group: ReadonlyArray<Item>) => Effect.Effect<ReadonlyArray<Exit.Exit<A, E>>, E, R>
  /** The size of an item in rows, counted against `maxGroupRows`. */
  readonly rows: (item: Item) => number
  /** Items of one key never share a group (compared with `SameValueZero`, as a `Set` does). */
  readonly key: (item: Item) => unknown
  /** Whether a group that failed with `error` is committed again one item per commit. */
  readonly fallback: (error: E) => boolean
  /** Called when a group falls back to one commit per item (e.g. to count it). */
  readonly onFallback?: ((group: ReadonlyArray<Item>) => void) | undefined
  /** Groups committed at once. */
  readonly writers: number
  /** A group stops taking items once it holds this many rows (an item is never split). */
  readonly maxGroupRows: number
  /** Most items one group carries; `1` turns grouping off. */
  readonly maxGroupItems: number
  /** How long a writer waits for more items once it has one; zero takes what is queued. */
  readonly groupWindow: Duration.Input
}

/** A running group commit: its writers live in the scope `make` was run in. */
export interface GroupCommit<in Item, out A, out E> {
  /** Queues `item` and waits for its own answer, whether it was committed in a group or alone. */
  readonly submit: (item: Item) => Effect.Effect<A, E>
}

interface Waiting<Item, A, E> {
  readonly item: Item
  readonly deferred: Deferred.Deferred<A, E>
}

/** Starts `options.writers` writers in the current scope and returns the queue's front door. */
export const make = <Item, A, E, R>(
  options: Options<Item, A, E, R>
): Effect.Effect<GroupCommit<Item, A, E>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const { commit, key, maxGroupItems, maxGroupRows, rows } = options
    const groupWindow = Duration.fromInputUnsafe(options.groupWindow)

    /** Completes each item of `group` with its answer from `answers` (same order). */
    const answer = (group: ReadonlyArray<Waiting<Item, A, E>>, answers: ReadonlyArray<Exit.Exit<A, E>>) => {
      for (let i = 0; i < group.length; i++) {
        const exit = answers[i] ??
          Exit.die(new Error(`GroupCommit: the commit answered ${answers.length} of ${group.length} items`))
        Deferred.doneUnsafe(group[i]!.deferred, exit)
      }
    }

    /** Commits a group; after an error `fallback` accepts, each item alone, so the error reaches only its own. */
    const commitGroup = Effect.fnUntraced(function*(group: ReadonlyArray<Waiting<Item, A, E>>) {
      const exit = yield* Effect.exit(commit(group.map((waiting) => waiting.item)))
      if (Exit.isSuccess(exit)) {
        answer(group, exit.value)
        return
      }
      const error = Cause.findErrorOption(exit.cause)
      if (group.length > 1 && Option.isSome(error) && options.fallback(error.value)) {
        options.onFallback?.(group.map((waiting) => waiting.item))
        yield* Effect.forEach(group, (waiting) =>
          Effect.map(Effect.exit(commit([waiting.item])), (single) =>
            Exit.isSuccess(single)
              ? answer([waiting], single.value)
              : Deferred.doneUnsafe(waiting.deferred, Exit.failCause(single.cause))), { discard: true })
        return
      }
      const failed = Exit.failCause(exit.cause)
      for (const waiting of group) Deferred.doneUnsafe(waiting.deferred, failed)
    })

    const queue = yield* Queue.unbounded<Waiting<Item, A, E>>()
    const gathering = yield* Semaphore.make(1)
    // items a group could not take (a second item of a key, or one past the bounds): the next group takes them
    // first, in order
    let heldOver: Array<Waiting<Item, A, E>> = []

    const gather = Effect.gen(function*() {
      const group: Array<Waiting<Item, A, E>> = []
      const keys = new Set<unknown>()
      let groupRows = 0
      const add = (waiting: Waiting<Item, A, E>) => {
        group.push(waiting)
        keys.add(key(waiting.item))
        groupRows += rows(waiting.item)
      }
      const open = () => groupRows < maxGroupRows && group.length < maxGroupItems
      const pending = heldOver
      heldOver = []
      for (const waiting of pending) {
        // held over from an earlier group: taken first, within the same bounds as the rest
        if (keys.has(key(waiting.item)) || (group.length > 0 && !open())) heldOver.push(waiting)
        else add(waiting)
      }
      if (group.length === 0) add(yield* Queue.take(queue))
      // let the fibers that are ready now (items due at the same moment) queue theirs first
      yield* Effect.yieldNow
      if (Duration.toMillis(groupWindow) > 0) yield* Effect.sleep(groupWindow)
      while (open()) {
        const next = Queue.takeUnsafe(queue)
        if (next === undefined || Exit.isFailure(next)) break
        if (keys.has(key(next.value.item))) heldOver.push(next.value)
        else add(next.value)
      }
      return group
    })

    const writer = Effect.forever(Effect.flatMap(gathering.withPermits(1)(gather), commitGroup))
    for (let i = 0; i < options.writers; i++) yield* Effect.forkScoped(writer)

    const submit = (item: Item): Effect.Effect<A, E> =>
      Effect.suspend(() => {
        const deferred = Deferred.makeUnsafe<A, E>()
        Queue.offerUnsafe(queue, { item, deferred })
        return Deferred.await(deferred)
      })

    return { submit }
  })
