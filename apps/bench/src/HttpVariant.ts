/**
 * The same kind of load through the HTTP API of a real `sector-host` process (its own database): requests of 20
 * ops at a fixed rate, one in ten with `ack=durable` to time op→durable, over keep-alive connections on loopback,
 * after every sector has been activated.
 */
import { type Op } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { OpSource, Summary, Workload } from "@sectors/workloads"
import { Effect, Random, Redacted } from "effect"
import { spawn } from "node:child_process"
import * as net from "node:net"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../../sector-host/src/main.ts", import.meta.url))

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

/** Offers `rate` ops/s for `seconds` to a host process on a fresh database of the server at `serverUrl`. */
export const run = (serverUrl: Redacted.Redacted<string>, options: { readonly rate: number; readonly seconds: number }) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_http")
    const port = yield* Effect.promise(freePort)
    // killed when the scope closes unless it already exited: a host that failed to start or a run that died
    // must not leave the process behind
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [entry], {
          env: { PATH: process.env.PATH ?? "", DATABASE_URL: Redacted.value(url), PORT: String(port), LOG_FORMAT: "json" },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
    )
    const source = yield* OpSource.make(Workload.fieldReport.sustained).pipe(Random.withSeed(3))
    return yield* Effect.promise(async () => {
      let output = ""
      child.stdout.on("data", (c: Buffer) => (output += c.toString()))
      child.stderr.on("data", (c: Buffer) => (output += c.toString()))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      for (let i = 0; i < 600 && !output.includes("listening on"); i++) await new Promise((r) => setTimeout(r, 100))
      if (!output.includes("listening on")) throw new Error(`sector-host did not start:\n${output}`)
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
      child.kill("SIGTERM")
      const code = await exited
      if (code !== 0) throw new Error(`sector-host exited with ${code}:\n${output.slice(-2000)}`)
      return { rate: options.rate, accepted: accepted / elapsed, latency: Summary.summarize(latencies) }
    })
  }).pipe(Effect.scoped)
