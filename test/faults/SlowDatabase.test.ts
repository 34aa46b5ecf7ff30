/**
 * Slow database: the real host process writes to PostgreSQL through a loopback TCP proxy the suite runs
 * (`support/Proxy.ts`), which adds a one-way delay to every chunk. Side by side in one run, the same load is driven
 * first with no delay and then with one; the batch figures come from the host's `/metrics`, the answer times from the
 * load's own requests.
 *
 * What must hold: natural batching grows the batches (ops pile up while the one batch of a sector is in flight, so
 * a slower round trip means bigger batches, not more of them); no timeouts cascade (no retried or failed persist, no
 * 5xx, no request left without an answer); latency stays bounded (p99 op→durable within `durableBoundMs` of the
 * delay, every `ack=durable` answered within `DURABLE_TIMEOUT`); and after the load every acknowledged op is in the
 * database, exactly as folded.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Summary } from "@sectors/workloads"
import { Effect, Redacted } from "effect"
import { scoped } from "../support/HostProcess.ts"
import * as Load from "../support/Load.ts"
import { metric, scrape } from "../support/Observe.ts"
import * as Proxy from "../support/Proxy.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

/**
 * How long `ack=durable` waits before 504. A durable ack waits for at most the batch in flight and its own, each a
 * transaction of up to ~9 round trips (BEGIN, the sector rows, deletes, upserts, COMMIT): under 2 s at 50 ms one-way,
 * ~8 s at 200 ms. The limit leaves room for that, so a 504 means latency ran away, not that the database is slow.
 */
const durableTimeoutMs = pick(10_000, 20_000)

/** The host's `maxWait` (the balanced profile, the default). */
const maxWaitMs = 25

/**
 * The bound on p99 op→durable at a one-way delay of `delayMs`: an op waits for the grid (`maxWait`), the batch in
 * flight when it arrived, its own, and — with every writer busy — up to two transactions ahead of it; each is up to
 * 10 round trips (BEGIN, the sector rows, the replay check, the deletes, the upserts, COMMIT) of twice the delay. One
 * second on top for HTTP, the event loop and a loaded CI machine.
 */
const durableBoundMs = (delayMs: number) => maxWaitMs + 4 * 10 * 2 * delayMs + 1_000

/** The load: enough sectors and ops that batches are taken by count when the database is fast. */
const load = { sectors: 8, opsPerRequest: 20, durableEvery: 20, seed: 11 } as const

/** The phases, one-way latency and how long each runs (after a warm-up that is not measured). */
const phases: ReadonlyArray<{ readonly latencyMs: number; readonly warmUpMs: number; readonly measureMs: number }> = pick(
  [
    { latencyMs: 0, warmUpMs: 1_000, measureMs: 4_000 },
    { latencyMs: 50, warmUpMs: 1_000, measureMs: 5_000 }
  ],
  [
    { latencyMs: 0, warmUpMs: 2_000, measureMs: 30_000 },
    { latencyMs: 50, warmUpMs: 2_000, measureMs: 30_000 },
    { latencyMs: 200, warmUpMs: 3_000, measureMs: 30_000 },
    { latencyMs: 0, warmUpMs: 2_000, measureMs: 15_000 }
  ]
)

/** One request of the load as the test saw it. */
interface Timed {
  readonly durable: boolean
  readonly status: number
  readonly ms: number
}

/**
 * Times every op submission of `Load` (which uses the global `fetch`) until the scope closes: the headers' arrival
 * is the answer. `Load` itself only keeps the slowest answer, and the phases need percentiles.
 */
const timeSubmissions = Effect.acquireRelease(
  Effect.sync(() => {
    const original = globalThis.fetch
    const log: Array<Timed> = []
    globalThis.fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input)
      const started = performance.now()
      const response = await original(input, init)
      if (url.includes("/ops")) {
        log.push({ durable: url.includes("ack=durable"), status: response.status, ms: performance.now() - started })
      }
      return response
    }
    return { log, original }
  }),
  ({ original }) => Effect.sync(() => void (globalThis.fetch = original))
)

const countBy = (requests: ReadonlyArray<Timed>) => {
  const statuses: Record<number, number> = {}
  for (const { status } of requests) statuses[status] = (statuses[status] ?? 0) + 1
  return statuses
}

/** The figures of one phase. */
interface Figures {
  readonly latencyMs: number
  readonly seconds: number
  readonly batches: number
  readonly opsPersisted: number
  readonly meanBatch: number
  readonly transactions: number
  /** Round trips through the proxy (turns of the conversation with PostgreSQL). */
  readonly roundTrips: number
  readonly retries: number
  readonly failures: number
  readonly requests: number
  readonly durable: number
  readonly p99Accepted: number
  readonly p99Durable: number
  readonly maxMs: number
  readonly statuses: Record<number, number>
}

const line = (f: Figures) =>
  `slow database, ${String(f.latencyMs).padStart(3)} ms one-way: mean batch ${f.meanBatch.toFixed(1)} ops ` +
  `(${f.batches} batches in ${f.transactions} transactions, ${f.roundTrips} round trips, ${f.opsPersisted} ops ` +
  `persisted in ${f.seconds.toFixed(1)} s, retries ${f.retries}, ` +
  `failed persists ${f.failures}); ${f.requests} requests, p99 accepted ${f.p99Accepted.toFixed(0)} ms, ` +
  `p99 durable ${f.p99Durable.toFixed(0)} ms (${f.durable} durable), max ${f.maxMs.toFixed(0)} ms; ` +
  `statuses ${JSON.stringify(f.statuses)}`

describe("slow database (injected latency via a loopback TCP proxy the suite runs)", () => {
  it.live(
    "natural batching grows batches, no timeouts cascade, latency stays bounded, and every acknowledged op is durable",
    () =>
      Effect.gen(function*() {
        const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
        const proxy = yield* Effect.acquireRelease(
          Effect.promise(() => Proxy.start({ target: Proxy.targetOf(url) })),
          (proxy) => Effect.promise(() => proxy.close())
        )
        const host = yield* scoped({
          DATABASE_URL: Proxy.throughProxy(url, proxy),
          DURABLE_TIMEOUT: `${durableTimeoutMs} millis`
        })
        const timings = yield* timeSubmissions
        const history = new Load.History()

        /** Flushes every loaded sector; each must answer 200 with everything acknowledged durable. */
        const flushAll = Effect.promise(() => Verify.flushAll(host.baseUrl, history)).pipe(
          Effect.map((problems) => assert.deepStrictEqual(problems, []))
        )

        const figures: Array<Figures> = []
        for (const phase of phases) {
          proxy.setLatency(phase.latencyMs)
          const from = timings.log.length
          const running = Load.start(host.baseUrl, history, load)
          yield* Effect.sleep(phase.warmUpMs)
          const before = yield* Effect.promise(() => scrape(host.baseUrl))
          const roundTripsBefore = proxy.roundTrips()
          const started = performance.now()
          yield* Effect.sleep(phase.measureMs)
          const after = yield* Effect.promise(() => scrape(host.baseUrl))
          const roundTrips = proxy.roundTrips() - roundTripsBefore
          const seconds = (performance.now() - started) / 1000
          yield* Effect.promise(() => running.stop())
          // nothing of this phase is left for the next one to persist
          yield* flushAll

          const delta = (name: string) => metric(after, name) - metric(before, name)
          const requests = timings.log.slice(from)
          const batches = delta("sectors_batch_ops_count")
          const opsPersisted = delta("sectors_batch_ops_sum")
          const phaseFigures: Figures = {
            latencyMs: phase.latencyMs,
            seconds,
            batches,
            opsPersisted,
            meanBatch: opsPersisted / batches,
            transactions: delta("sectors_pg_transactions_total"),
            roundTrips,
            retries: delta("sectors_persist_retries_total"),
            failures: delta("sectors_persist_failures_total"),
            requests: requests.length,
            durable: requests.filter((r) => r.durable).length,
            p99Accepted: Summary.percentile(requests.filter((r) => !r.durable).map((r) => r.ms), 99),
            p99Durable: Summary.percentile(requests.filter((r) => r.durable).map((r) => r.ms), 99),
            maxMs: Math.max(...requests.map((r) => r.ms)),
            statuses: countBy(requests)
          }
          console.log(line(phaseFigures))
          figures.push(phaseFigures)

          assert.isAbove(batches, 0, `no batch committed at ${phase.latencyMs} ms`)
          assert.isAbove(phaseFigures.durable, 0, `no durable request at ${phase.latencyMs} ms`)
          // latency stays bounded: the durable answers scale with the round trips, they do not run away
          assert.isBelow(phaseFigures.p99Durable, durableBoundMs(phase.latencyMs), line(phaseFigures))
          // the counters agree with the histogram: every committed batch is counted once, with its ops
          assert.strictEqual(delta("sectors_batches_total"), batches)
          assert.strictEqual(delta("sectors_ops_persisted_total"), opsPersisted)
          // no timeouts cascade: a slow database is not a failing one
          assert.strictEqual(phaseFigures.retries, 0, line(phaseFigures))
          assert.strictEqual(phaseFigures.failures, 0, line(phaseFigures))
          assert.deepStrictEqual(
            Object.keys(phaseFigures.statuses).filter((status) => status !== "200" && status !== "202"),
            [],
            line(phaseFigures)
          )
        }

        // natural batching, measured side by side: while a sector's one batch is in flight its ops pile up, so a
        // slower round trip makes batches bigger (by half at least; a fixed batch size would not move at all)
        const fast = figures.find((f) => f.latencyMs === 0)!
        for (const slow of figures.filter((f) => f.latencyMs > 0)) {
          assert.isAbove(slow.meanBatch, 1.5 * fast.meanBatch, `${line(slow)}\nvs\n${line(fast)}`)
        }

        // the whole run: nothing failed, nothing went unanswered, no durable ack timed out
        assert.strictEqual(history.unanswered, 0)
        assert.deepStrictEqual(
          [...history.statuses.keys()].filter((status) => status !== 200 && status !== 202),
          [],
          JSON.stringify([...history.statuses])
        )
        assert.isBelow(history.slowest, durableTimeoutMs)
        console.log(
          `slow database, whole run: statuses ${JSON.stringify(Object.fromEntries(history.statuses))}, ` +
            `unanswered ${history.unanswered}, slowest answer ${history.slowest} ms`
        )

        proxy.setLatency(0)
        yield* flushAll
        const problems = yield* Effect.promise(() => Verify.discrepancies(url, history, { everythingDurable: true }))
        assert.deepStrictEqual(problems, [])
      }),
    { timeout: pick(60_000, 900_000) }
  )
})
