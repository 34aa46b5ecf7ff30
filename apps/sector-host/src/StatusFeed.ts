/**
 * A feed of samples taken every `interval` while — and only while — someone subscribes: the machinery behind the
 * status page's stream (`StatusPage`), apart from what a sample holds (`Status`).
 *
 * The first subscriber starts the sampling fiber (a fresh sampler, its baseline taken then), the last one to leave
 * interrupts it: with nobody watching no timer is armed and nothing is sampled, so an idle host is woken by nothing of
 * this. Subscribers are bounded (`maxSubscribers`): one more fails with `TooManySubscribers` and costs nothing. Each
 * subscriber gets the samples taken since sampling started (at most `history` of them) and then every new one; a
 * subscriber that reads slowly loses its oldest unread samples (a sliding buffer of `buffer` samples each), so a
 * stalled reader holds a bounded amount of memory.
 *
 * **Gotchas** the history ends with the sampling: after everyone left, the next subscriber starts from an empty
 * history (a chart over a gap would draw a line across time nobody measured). A new subscriber may see the sample
 * taken while it subscribed twice (once in the history, once live): samples carry their time, readers skip repeats.
 */
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"

/** The feed already has `maxSubscribers`. */
export class TooManySubscribers extends Data.TaggedError("TooManySubscribers")<{ readonly maxSubscribers: number }> {}

/** A feed of samples of type `A`. */
export interface StatusFeed<A> {
  /**
   * The samples, for as long as the stream runs: the history, then each new sample. Running it counts as a
   * subscriber (the first starts the sampling, the last to end stops it); it fails at once with `TooManySubscribers`
   * when the feed has `maxSubscribers`.
   */
  readonly subscribe: Stream.Stream<A, TooManySubscribers>
  /** Subscribers now. */
  readonly subscribers: () => number
  /** Whether the sampling fiber runs (exactly while there is a subscriber). */
  readonly sampling: () => boolean
  /** The bound on subscribers. */
  readonly maxSubscribers: number
}

export interface Options<A, R> {
  /** A fresh sampler, its baseline taken when it is made: made when sampling starts, run every `interval`. */
  readonly sampler: Effect.Effect<Effect.Effect<A>, never, R>
  /** Time between samples. */
  readonly interval: Duration.Input
  /** Most subscribers at once. */
  readonly maxSubscribers: number
  /** Most samples kept for a new subscriber (the last minutes of the charts). */
  readonly history: number
  /** Most unread samples kept per subscriber; older ones are dropped. */
  readonly buffer: number
}

/** Makes a feed whose sampling fiber, when it runs, lives in the caller's scope. */
export const make = <A, R>(options: Options<A, R>): Effect.Effect<StatusFeed<A>, never, R | Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const context = yield* Effect.context<R>()
    const pubsub = yield* PubSub.sliding<A>(options.buffer)
    const lock = yield* Semaphore.make(1)
    let history: Array<A> = []
    let subscribers = 0
    let sampler: Fiber.Fiber<never> | undefined

    const sampling = Effect.gen(function*() {
      const take = yield* options.sampler
      return yield* Effect.forever(
        Effect.sleep(options.interval).pipe(
          Effect.andThen(take),
          Effect.flatMap((sample) => {
            history.push(sample)
            if (history.length > options.history) history.splice(0, history.length - options.history)
            return PubSub.publish(pubsub, sample)
          })
        )
      )
    }).pipe(Effect.provideContext(context))

    const join = Semaphore.withPermits(lock, 1)(Effect.gen(function*() {
      if (subscribers >= options.maxSubscribers) {
        return yield* new TooManySubscribers({ maxSubscribers: options.maxSubscribers })
      }
      subscribers += 1
      if (sampler === undefined) sampler = yield* Effect.forkIn(sampling, scope)
    }))

    const leave = Semaphore.withPermits(lock, 1)(Effect.gen(function*() {
      subscribers -= 1
      if (subscribers > 0 || sampler === undefined) return
      const fiber = sampler
      sampler = undefined
      history = []
      yield* Fiber.interrupt(fiber)
    }))

    const subscribe = Stream.unwrap(Effect.gen(function*() {
      yield* Effect.acquireRelease(join, () => leave)
      const subscription = yield* PubSub.subscribe(pubsub)
      return Stream.concat(Stream.fromIterable([...history]), Stream.fromSubscription(subscription))
    }))

    return {
      subscribe,
      subscribers: () => subscribers,
      sampling: () => sampler !== undefined,
      maxSubscribers: options.maxSubscribers
    }
  })
