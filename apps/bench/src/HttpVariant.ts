/**
 * The same kind of load through the HTTP API of a real `sector-host` process (its own database): requests of 20
 * ops at a fixed rate, one in ten with `ack=durable` to time op→durable, over keep-alive connections on loopback,
 * after every sector has been activated. The process is `HostProcess`: stopped with SIGTERM, it must exit 0.
 */
import { type Op } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { OpSource, Summary, Workload } from "@sectors/workloads"
import { Effect, Random, type Redacted } from "effect"
import * as HostProcess from "./HostProcess.ts"

/** Offers `rate` ops/s for `seconds` to a host process on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, options: { readonly rate: number; readonly seconds: number }) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_http")
    const host = yield* HostProcess.start({ DATABASE_URL: url })
    const source = yield* OpSource.make(Workload.fieldReport.sustained).pipe(Random.withSeed(3))

    const measured = yield* Effect.promise(async () => {
      const base = host.baseUrl
      // activate every sector first (a load per sector), as the in-process runs do, then measure the steady state
      const sectors = Workload.fieldReport.sustained.sectors
      await Promise.all(Array.from({ length: sectors }, (_, i) => fetch(`${base}/sectors/${i}`).then((r) => r.arrayBuffer())))
      const latencies: Array<number> = []
      let accepted = 0
      let requests = 0
      const pending: Array<Promise<void>> = []
      const start = performance.now()
      const perRequest = 20
      let due = 0
      while (performance.now() - start < options.seconds * 1000) {
        const now = performance.now()
        const target = Math.floor(((now - start) / 1000) * options.rate / perRequest)
        while (due < target) {
          due++
          const ops: Array<Op.Op> = Array.from({ length: perRequest }, () => source.op())
          const durable = ++requests % 10 === 0
          const sent = performance.now()
          pending.push(
            fetch(`${base}/sectors/${source.sector()}/ops?ack=${durable ? "durable" : "accepted"}`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ ops })
            }).then(async (response) => {
              await response.arrayBuffer()
              if (response.status === 200 || response.status === 202) accepted += perRequest
              if (durable && response.status === 200) latencies.push(performance.now() - sent)
            }, () => {})
          )
        }
        await new Promise((r) => setTimeout(r, 5))
      }
      await Promise.all(pending)
      const elapsed = (performance.now() - start) / 1000
      return { rate: options.rate, accepted: accepted / elapsed, latency: Summary.summarize(latencies) }
    })

    // SIGTERM: the host drains, flushes and exits; anything but 0 fails the run with its last output
    yield* host.stop
    return measured
  }).pipe(Effect.scoped)
