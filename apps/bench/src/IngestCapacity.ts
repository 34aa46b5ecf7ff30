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
 * The generator runs in the bench's process, on the host's machine: each step reports its CPU beside the host's, both
 * counted from when the load begins. The frames go out through a lean WebSocket client of the bench's own
 * (`WebSocketClient`); Node's built-in `WebSocket` took about as much CPU per frame as the host and was the limit on
 * two cores. A step's frames are made and masked before it begins, so that while it runs the generator only writes
 * slices of them and reads the answers: what it takes of the machine is not the host's to use.
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
  connections: number,
  started: () => void
): Promise<Omit<Step, "sustained" | "cpuCores">> => {
  const url = new URL(baseUrl)
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections })
  const total = Math.floor(rate * seconds)
  const latencies: Array<number> = []
  let next = 0
  let accepted = 0
  started()
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

/** A frame's text, as `JSON.stringify` would write `{id, sector, ops: [op], ack?}`, with less work per frame. */
const frameText = (id: number, sector: number, op: Op.Op, durable: boolean): string =>
  `{"id":${id},"sector":${sector},"ops":[${JSON.stringify(op)}]${durable ? `,"ack":"durable"` : ""}}`

const idPrefix = Buffer.from(`{"id":`)
const persistedEnd = Buffer.from(`,"persisted":true}`)
const comma = 0x2c
const quote = 0x22
const letterS = 0x73

/**
 * What the generator needs of an answer, read from its bytes without decoding it: the numeric `id` it starts with
 * (`{"id":<digits>,`), whether it accepted the frame (`"sector"` follows the id; a refusal has `"error"` there), and
 * whether it says `"persisted": true` (the host writes it last). `undefined` when the answer does not start so.
 */
const readAnswer = (
  bytes: Uint8Array,
  from: number,
  to: number
): { readonly id: number; readonly accepted: boolean; readonly persisted: boolean } | undefined => {
  if (to - from < idPrefix.length + 4) return undefined
  for (let i = 0; i < idPrefix.length; i++) if (bytes[from + i] !== idPrefix[i]) return undefined
  let at = from + idPrefix.length
  let id = 0
  const digitsFrom = at
  for (; at < to && bytes[at]! >= 0x30 && bytes[at]! <= 0x39; at++) id = id * 10 + bytes[at]! - 0x30
  if (at === digitsFrom || at + 2 >= to || bytes[at] !== comma || bytes[at + 1] !== quote) return undefined
  const accepted = bytes[at + 2] === letterS
  let persisted = to - from >= persistedEnd.length
  for (let i = 0; persisted && i < persistedEnd.length; i++) {
    persisted = bytes[to - persistedEnd.length + i] === persistedEnd[i]
  }
  return { id, accepted, persisted: accepted && persisted }
}

/**
 * `rate` single-op frames/s for `seconds` over `sockets` connections to `/ingest`, sent with the lean client so that
 * the generator, which shares the machine with the host, takes little of it: every frame of the step is written out
 * (`frameText`) and masked with a fresh key (`WebSocketClient.encode`) before the step begins, each tick writes the
 * frames due on a connection as one slice of those bytes, and each answer is read from its bytes (`readAnswer`). Every
 * answer is checked: its id must be one sent on that connection and not answered yet (the step fails otherwise).
 */
const frameStep = async (
  baseUrl: string,
  source: OpSource.OpSource,
  rate: number,
  seconds: number,
  sockets: number,
  started: () => void
): Promise<Omit<Step, "sustained" | "cpuCores">> => {
  const total = Math.floor(rate * seconds)
  // the step's frames, laid out before it starts: each connection's as masked frames back to back
  const texts: Array<Array<string>> = Array.from({ length: sockets }, () => [])
  for (let id = 0; id < total; id++) texts[id % sockets]!.push(frameText(id, source.sector(), source.op(), id % 20 === 0))
  const laidOut = texts.map(WebSocketClient.encode)
  /** Frames written so far, per connection. */
  const written = laidOut.map(() => 0)
  const connections = await Promise.all(
    Array.from({ length: sockets }, () => WebSocketClient.open(`${baseUrl.replace(/^http/, "ws")}/ingest`))
  )
  // per frame: 0 not sent, 1 sent and unanswered, 2 answered
  const state = new Uint8Array(total)
  const latencies: Array<number> = []
  let accepted = 0
  let answered = 0
  let lastAnswer = 0
  let strays = 0
  started()
  const start = performance.now()
  connections.forEach((connection, index) => {
    connection.onText = (bytes, from, to) => {
      const answer = readAnswer(bytes, from, to)
      const id = answer === undefined ? -1 : answer.id
      if (id < 0 || id >= total || id % sockets !== index || state[id] !== 1) {
        strays++
        return
      }
      state[id] = 2
      answered++
      lastAnswer = performance.now()
      if (answer!.accepted) accepted++
      if (answer!.persisted) latencies.push(lastAnswer - (start + (id * 1000) / rate))
    }
  })
  for (let sent = 0; sent < total;) {
    const now = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000))
    for (; sent < now; sent++) state[sent] = 1
    // connection `c` carries the frames `c`, `c + sockets`, …: those below `now` are due
    laidOut.forEach(({ bytes, offsets }, c) => {
      const due = now > c ? Math.ceil((now - c) / sockets) : 0
      if (due > written[c]!) connections[c]!.write(bytes.subarray(offsets[written[c]!], offsets[due]))
      written[c] = due
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
  /** Calls `started` when its load begins (after what it prepares), where CPU starts to be counted. */
  step: (
    baseUrl: string,
    source: OpSource.OpSource,
    rate: number,
    started: () => void
  ) => Promise<Omit<Step, "sustained" | "cpuCores">>,
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
        let cpuBefore = 0
        let generatorBefore = process.cpuUsage()
        const measured = yield* Effect.promise(() =>
          step(host.baseUrl, source, rate, () => {
            cpuBefore = host.cpuSeconds()
            generatorBefore = process.cpuUsage()
          })
        )
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
    const post = yield* searchOn(serverUrl, "post", options.postRates, options, (base, source, rate, started) =>
      postStep(base, source, rate, options.seconds, options.connections, started), log)
    const frames = yield* searchOn(serverUrl, "frames", options.frameRates, options, (base, source, rate, started) =>
      frameStep(base, source, rate, options.seconds, options.sockets, started), log)
    return { options, loadAverageAtStart, post, frames } satisfies Result
  })
