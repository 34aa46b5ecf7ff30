/**
 * The same kind of load through the HTTP API of a real `sector-host` process (its own database): requests of 20
 * ops at a fixed rate, one in ten with `ack=durable` to time op→durable, over keep-alive connections on loopback,
 * after every sector has been activated. The process is effect's `ChildProcess` (the Node spawner comes from
 * `main.ts`): it is stopped with SIGTERM and must exit 0; if the run fails first, closing the scope kills it.
 */
import { type Op } from "@sectors/core"
import { PgEmbedded, Port } from "@sectors/pg-embedded"
import { OpSource, Summary, Workload } from "@sectors/workloads"
import { Deferred, Effect, Exit, Random, type Redacted, Stream } from "effect"
import { ChildProcess } from "effect/process"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../../sector-host/src/main.ts", import.meta.url))

/** How a process ended, in words: its exit code, or the signal that ended it. */
const describe = (exit: Exit.Exit<number, unknown>) => Exit.isSuccess(exit) ? `code ${exit.value}` : "a signal"

/** How long the host may take to say it listens. */
const startTimeout = "60 seconds"

/** Offers `rate` ops/s for `seconds` to a host process on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, options: { readonly rate: number; readonly seconds: number }) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_http")
    const port = yield* Port.free
    // in the bench's process group (Ctrl-C reaches it too); killed when the scope closes unless it already exited:
    // a host that failed to start or a run that died must not leave the process behind
    const host = yield* ChildProcess.make(process.execPath, [entry], {
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: url, PORT: String(port), LOG_FORMAT: "json" },
      stdin: "ignore",
      detached: false,
      killSignal: "SIGKILL"
    })
    let output = ""
    const listening = yield* Deferred.make<void>()
    yield* host.all.pipe(
      Stream.decodeText(),
      Stream.runForEach((text) =>
        Effect.suspend(() => {
          output += text
          return output.includes("listening on") ? Deferred.succeed(listening, undefined) : Effect.void
        })
      ),
      Effect.forkScoped
    )
    yield* Deferred.await(listening).pipe(
      Effect.raceFirst(Effect.flatMap(Effect.exit(host.exitCode), (exit) =>
        Effect.fail(new Error(`sector-host exited before listening (${describe(exit)}):\n${output}`))
      )),
      Effect.timeoutOrElse({
        duration: startTimeout,
        orElse: () => Effect.fail(new Error(`sector-host did not start within ${startTimeout}:\n${output}`))
      })
    )
    const source = yield* OpSource.make(Workload.fieldReport.sustained).pipe(Random.withSeed(3))

    const measured = yield* Effect.promise(async () => {
      const base = `http://127.0.0.1:${port}`
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
    yield* host.kill({ killSignal: "SIGTERM" })
    const exit = yield* Effect.exit(host.exitCode)
    if (Exit.isFailure(exit) || exit.value !== 0) {
      return yield* Effect.fail(new Error(`sector-host exited with ${describe(exit)}:\n${output.slice(-2000)}`))
    }
    return measured
  }).pipe(Effect.scoped)
