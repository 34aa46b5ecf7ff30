/**
 * The `ingest` suite (issue 17, items 2 and 6): the highest rate of single-op submissions a host process sustains
 * through its HTTP API (`POST /sectors/{id}/ops`, one op per request) and through `/ingest` (one op per WebSocket
 * frame, 8 connections), searched as the in-process capacity is (`Capacity.highestSustained`: doubling rates, then
 * bisection steps). Each kind gets a host process of its own on a fresh database, every sector activated first.
 *
 * The load is open: submissions are due at the offered rate from the start of a step (POSTs over at most
 * `connections` keep-alive connections, frames from a 1 ms tick spread round-robin over the sockets), one in 20 with
 * a durable ack. A rate is sustained when at least 95 % of what was due is accepted, the last answer comes within a
 * second of the step's end, and the p99 of the durable ones — from when they were due to their answer, so falling
 * behind counts — stays under 2 s: the same bounds as the in-process search (`Capacity`).
 *
 * The generator runs in the bench's process, on the host's machine: each step reports its CPU beside the host's. The
 * frames go out through a lean WebSocket client of the bench's own (`WebSocketClient`); Node's built-in `WebSocket`
 * took about as much CPU per frame as the host and was the limit on two cores.
 */
import { type Op } from "@sectors/core"
import { PgEmbedded } from "@sectors/pg-embedded"
import { type OpSource, OpSource as Source, Summary, Workload } from "@sectors/workloads"
import { Effect, Random, type Redacted } from "effect"
import * as http from "node:http"
import * as os from "node:os"
import * as Capacity from "./Capacity.ts"
import * as ClosedLoop from "./ClosedLoop.ts"
import * as HostProcess from "./HostProcess.ts"
import * as WebSocketClient from "./WebSocketClient.ts"

/** How the searches run. */
export interface Options {
  readonly seconds: number
  readonly postRates: ReadonlyArray<number>
  readonly frameRates: ReadonlyArray<number>
  readonly refine: number
  /** Most POSTs in flight at once. */
  readonly connections: number
  /** WebSocket connections to `/ingest`. */
  readonly sockets: number
}

export const quick: Options = {
  seconds: 4,
  postRates: [1_000, 2_000, 4_000, 8_000, 16_000],
  frameRates: [4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000],
  refine: 2,
  connections: 64,
  sockets: 8
}
export const full: Options = { ...quick, seconds: 10 }

/** One step of a search. */
export interface Step {
  readonly rate: number
  readonly sustained: boolean
  readonly offered: number
  readonly accepted: number
  /** From the first submission due to the last answer. */
  readonly seconds: number
  readonly latency: Summary.Summary
  /** Host process CPU over the step, in cores. */
  readonly cpuCores: number
  /** The load generator's CPU (the bench process) over the step, in cores; absent in runs before it was measured. */
  readonly generatorCores?: number | undefined
}

/** One search. */
export interface Search {
  readonly maxSustained: number
  readonly steps: ReadonlyArray<Step>
}

/** What the suite measured. */
export interface Result {
  readonly options: Options
  readonly loadAverageAtStart: ReadonlyArray<number>
  readonly post: Search
  readonly frames: Search
}

/** Whether a step kept up with its rate (see the module's opening). */
const keptUp = (step: Omit<Step, "sustained" | "cpuCores">, seconds: number): boolean =>
  step.accepted >= 0.95 * step.offered && step.seconds <= seconds + 1 &&
  (Number.isNaN(step.latency.p99) || step.latency.p99 < 2_000)

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

/** `rate` single-op POSTs/s for `seconds` to `baseUrl`. */
const postStep = async (
  baseUrl: string,
  source: OpSource.OpSource,
  rate: number,
  seconds: number,
  connections: number
): Promise<Omit<Step, "sustained" | "cpuCores">> => {
  const url = new URL(baseUrl)
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections })
  const total = Math.floor(rate * seconds)
  const latencies: Array<number> = []
  let next = 0
  let accepted = 0
  const start = performance.now()
  const loop = async () => {
    for (let k = next++; k < total; k = next++) {
      const due = start + (k * 1000) / rate
      const wait = due - performance.now()
      if (wait > 1) await sleep(wait)
      const durable = k % 20 === 0
      const ops: Array<Op.Op> = [source.op()]
      const status = await ClosedLoop.post(
        agent,
        url,
        `/sectors/${source.sector()}/ops?ack=${durable ? "durable" : "accepted"}`,
        JSON.stringify({ ops })
      )
      if (status === 200 || status === 202) accepted++
      if (durable && status === 200) latencies.push(performance.now() - due)
    }
  }
  await Promise.all(Array.from({ length: connections }, loop))
  agent.destroy()
  return { rate, offered: total, accepted, seconds: (performance.now() - start) / 1000, latency: Summary.summarize(latencies) }
}

/**
 * `rate` single-op frames/s for `seconds` over `sockets` connections to `/ingest`, sent with the lean client
 * (`WebSocketClient`: masked frames, the frames of a tick to a connection in one write) so that the generator, which
 * shares the machine with the host, takes little of it. Every answer is read and checked: its id must be one sent on
 * that connection and not answered yet (the step fails otherwise).
 */
const frameStep = async (
  baseUrl: string,
  source: OpSource.OpSource,
  rate: number,
  seconds: number,
  sockets: number
): Promise<Omit<Step, "sustained" | "cpuCores">> => {
  const connections = await Promise.all(
    Array.from({ length: sockets }, () => WebSocketClient.open(`${baseUrl.replace(/^http/, "ws")}/ingest`))
  )
  const total = Math.floor(rate * seconds)
  // per frame: 0 not sent, 1 sent and unanswered, 2 answered
  const state = new Uint8Array(total)
  const latencies: Array<number> = []
  let accepted = 0
  let answered = 0
  let lastAnswer = 0
  let strays = 0
  const start = performance.now()
  connections.forEach((connection, index) => {
    connection.onText = (text) => {
      const answer = JSON.parse(text) as { id: unknown; accepted?: number; persisted?: boolean }
      const id = answer.id
      if (typeof id !== "number" || id % sockets !== index || state[id] !== 1) {
        strays++
        return
      }
      state[id] = 2
      answered++
      lastAnswer = performance.now()
      if (answer.accepted !== undefined) accepted++
      if (answer.persisted === true) latencies.push(lastAnswer - (start + (id * 1000) / rate))
    }
  })
  let sent = 0
  const batches: Array<Array<string>> = connections.map(() => [])
  while (sent < total) {
    const now = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000))
    for (; sent < now; sent++) {
      state[sent] = 1
      batches[sent % sockets]!.push(JSON.stringify({
        id: sent,
        sector: source.sector(),
        ops: [source.op()],
        ...(sent % 20 === 0 ? { ack: "durable" } : {})
      }))
    }
    batches.forEach((batch, index) => {
      if (batch.length === 0) return
      connections[index]!.send(batch)
      batches[index] = []
    })
    await sleep(1)
  }
  // what is still unanswered a second after the window is not counted (nor waited for past 3 s)
  const deadline = performance.now() + 3_000
  while (answered < total && performance.now() < deadline) await sleep(5)
  await Promise.all(connections.map((connection) => connection.close()))
  if (strays > 0) throw new Error(`/ingest answered ${strays} frames that were not in flight on their connection`)
  return {
    rate,
    offered: total,
    accepted,
    seconds: ((answered < total ? performance.now() : lastAnswer) - start) / 1000,
    latency: Summary.summarize(latencies)
  }
}

/** A host process for one search, on a fresh database, every sector of the workload activated. */
const searchOn = (
  serverUrl: Redacted.Redacted<string>,
  name: string,
  rates: ReadonlyArray<number>,
  options: Options,
  step: (baseUrl: string, source: OpSource.OpSource, rate: number) => Promise<Omit<Step, "sustained" | "cpuCores">>,
  log: (message: string) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const workload = Workload.fieldReport.sustained
    const source = yield* Source.make(workload).pipe(Random.withSeed(17))
    const host = yield* HostProcess.start({ DATABASE_URL: yield* PgEmbedded.freshDatabase(serverUrl, `bench_${name}`) })
    yield* Effect.promise(() =>
      Promise.all(Array.from({ length: workload.sectors }, (_, i) => fetch(`${host.baseUrl}/sectors/${i}`).then((r) => r.arrayBuffer())))
    )
    const steps: Array<Step> = []
    const maxSustained = yield* Capacity.highestSustained({ rates, refine: options.refine }, (rate) =>
      Effect.gen(function*() {
        const cpuBefore = host.cpuSeconds()
        const generatorBefore = process.cpuUsage()
        const measured = yield* Effect.promise(() => step(host.baseUrl, source, rate))
        const cpuCores = (host.cpuSeconds() - cpuBefore) / measured.seconds
        const generator = process.cpuUsage(generatorBefore)
        const generatorCores = (generator.user + generator.system) / 1e6 / measured.seconds
        const sustained = keptUp(measured, options.seconds)
        steps.push({ ...measured, sustained, cpuCores, generatorCores })
        yield* log(
          `ingest ${name} at ${rate}/s: ${sustained ? "sustained" : "not sustained"} (accepted ` +
            `${Math.round(measured.accepted / measured.seconds)}/s of ${measured.offered} in ${measured.seconds.toFixed(1)} s, ` +
            `durable p99 ${Math.round(measured.latency.p99)} ms, host ${cpuCores.toFixed(2)} cores, ` +
            `${((cpuCores * measured.seconds * 1e6) / Math.max(1, measured.accepted)).toFixed(1)} µs per accepted, ` +
            `generator ${generatorCores.toFixed(2)} cores)`
        )
        // let the host drain what a step that fell behind left
        yield* Effect.sleep("1 second")
        return sustained
      }))
    yield* host.stop
    return { maxSustained, steps } satisfies Search
  }).pipe(Effect.scoped)

export const run = (
  serverUrl: Redacted.Redacted<string>,
  options: Options,
  log: (message: string) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const loadAverageAtStart = os.loadavg()
    const post = yield* searchOn(serverUrl, "post", options.postRates, options, (base, source, rate) =>
      postStep(base, source, rate, options.seconds, options.connections), log)
    const frames = yield* searchOn(serverUrl, "frames", options.frameRates, options, (base, source, rate) =>
      frameStep(base, source, rate, options.seconds, options.sockets), log)
    return { options, loadAverageAtStart, post, frames } satisfies Result
  })
