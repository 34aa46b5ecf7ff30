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
  frameRates: [4_000, 8_000, 16_000, 32_000, 64_000, 128_000],
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

/** `rate` single-op frames/s for `seconds` over `sockets` connections to `/ingest`. */
const frameStep = async (
  baseUrl: string,
  source: OpSource.OpSource,
  rate: number,
  seconds: number,
  sockets: number
): Promise<Omit<Step, "sustained" | "cpuCores">> => {
  const connections = await Promise.all(Array.from({ length: sockets }, () =>
    new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(`${baseUrl.replace(/^http/, "ws")}/ingest`)
      socket.onopen = () => resolve(socket)
      socket.onerror = () => reject(new Error("cannot open /ingest"))
    })))
  const total = Math.floor(rate * seconds)
  const due = new Map<number, number>()
  const latencies: Array<number> = []
  let accepted = 0
  let answered = 0
  let lastAnswer = 0
  for (const socket of connections) {
    socket.onmessage = (event) => {
      const answer = JSON.parse(String(event.data)) as { id: number; accepted?: number; persisted?: boolean }
      answered++
      lastAnswer = performance.now()
      if (answer.accepted !== undefined) accepted++
      const dueAt = due.get(answer.id)
      if (dueAt !== undefined && answer.persisted === true) latencies.push(lastAnswer - dueAt)
      due.delete(answer.id)
    }
  }
  const start = performance.now()
  let sent = 0
  while (sent < total) {
    const now = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000))
    for (; sent < now; sent++) {
      const durable = sent % 20 === 0
      if (durable) due.set(sent, start + (sent * 1000) / rate)
      connections[sent % sockets]!.send(JSON.stringify({
        id: sent,
        sector: source.sector(),
        ops: [source.op()],
        ...(durable ? { ack: "durable" } : {})
      }))
    }
    await sleep(1)
  }
  // what is still unanswered a second after the window is not counted (nor waited for past 3 s)
  const deadline = performance.now() + 3_000
  while (answered < total && performance.now() < deadline) await sleep(5)
  for (const socket of connections) socket.close()
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
        const measured = yield* Effect.promise(() => step(host.baseUrl, source, rate))
        const cpuCores = (host.cpuSeconds() - cpuBefore) / measured.seconds
        const sustained = keptUp(measured, options.seconds)
        steps.push({ ...measured, sustained, cpuCores })
        yield* log(
          `ingest ${name} at ${rate}/s: ${sustained ? "sustained" : "not sustained"} (accepted ` +
            `${Math.round(measured.accepted / measured.seconds)}/s of ${measured.offered} in ${measured.seconds.toFixed(1)} s, ` +
            `durable p99 ${Math.round(measured.latency.p99)} ms, host ${cpuCores.toFixed(2)} cores)`
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
