/**
 * The `lean` suite (issue 17, item 1): single-op `POST /sectors/{id}/ops` against the host process and against two
 * yardsticks that do nothing but read the body, parse its JSON and answer 202 (`BaselineServer`: bare `node:http`,
 * and the same on effect's `HttpRouter`), each a process of its own, driven by the same closed-loop generator
 * (`ClosedLoop`: 32 keep-alive connections, one op per request) in alternating rounds — the order turns each round —
 * so drift in the machine's load falls on all three alike; each round starts every server afresh (a process keeps its
 * own offset of CPU per request for its life), and each server's CPU time per request is read from `/proc`. Then the
 * host once more under `node --cpu-prof`, under
 * the same load, its profile sliced to the measured window (`CpuProfile`): where its time goes.
 */
import { PgEmbedded } from "@sectors/pg-embedded"
import { OpSource, Summary, Workload } from "@sectors/workloads"
import { Effect, Random, type Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as ClosedLoop from "./ClosedLoop.ts"
import * as CpuProfile from "./CpuProfile.ts"
import * as HostProcess from "./HostProcess.ts"

/** The yardsticks' entry point. */
const baselineEntry = fileURLToPath(new URL("./BaselineServer.ts", import.meta.url))

/** The servers measured, in the order of the first round. */
export const servers = ["bare node:http", "effect HttpRouter", "sector-host", "sector-host, baseline"] as const
export type Server = (typeof servers)[number]

/** How the suite runs. */
export interface Options {
  readonly rounds: number
  readonly seconds: number
  readonly warmupSeconds: number
  readonly connections: number
  /** Seconds of load under `--cpu-prof` (0: no profile). */
  readonly profileSeconds: number
  /** Another checkout whose host is measured in the same rounds (`--baseline`), to compare with. */
  readonly baseline?: string | undefined
}

/**
 * The warm-up is long because the host's is: measured in 3 s windows from 2 s of load on, its first window spent
 * 223–267 µs of CPU per request and the later ones 147–213 (V8 still optimising effect's code), while the bare
 * server's first window was as its last. 8 s of load before a server is measured keeps that out of the figures.
 */
export const quick: Options = { rounds: 3, seconds: 5, warmupSeconds: 8, connections: 32, profileSeconds: 8 }
export const full: Options = { rounds: 5, seconds: 10, warmupSeconds: 8, connections: 32, profileSeconds: 15 }

/** One server in one round. */
export interface Figure {
  readonly server: Server
  readonly round: number
  /** 1-minute load average when the round began. */
  readonly loadAverage: number
  readonly requestsPerSecond: number
  /** The server process's CPU time per answered request, µs (user and system). */
  readonly cpuMicrosPerRequest?: number | undefined
  readonly latency: Summary.Summary
  readonly statuses: Readonly<Record<string, number>>
}

/** What the suite measured. */
export interface Result {
  readonly options: Options
  readonly loadAverageAtStart: ReadonlyArray<number>
  readonly figures: ReadonlyArray<Figure>
  /** The host's profile under the same load (absent with `profileSeconds: 0`). */
  readonly profile?: (CpuProfile.Summary & { readonly requestsPerSecond: number }) | undefined
}

/** The mean requests/s of `server` over the rounds. */
export const meanRate = (result: Result, server: Server): number => mean(result, server, (f) => f.requestsPerSecond)

/** `server`'s requests/s over bare's, round by round (rounds where both were measured). */
export const roundRatios = (result: Result, server: Server): ReadonlyArray<number> => {
  const rate = (name: Server, round: number) =>
    result.figures.find((f) => f.server === name && f.round === round)?.requestsPerSecond
  const rounds = [...new Set(result.figures.map((f) => f.round))].sort((a, b) => a - b)
  return rounds.flatMap((round) => {
    const mine = rate(server, round)
    const bare = rate("bare node:http", round)
    return mine === undefined || bare === undefined || bare === 0 ? [] : [mine / bare]
  })
}

/** The mean of `pick` for `server` over the rounds. */
export const mean = (result: Result, server: Server, pick: (figure: Figure) => number): number => {
  const values = result.figures.filter((f) => f.server === server).map(pick)
  return values.reduce((a, b) => a + b, 0) / Math.max(1, values.length)
}

/** Activates every sector of the workload on the host, so that loads are not measured. */
const activate = (baseUrl: string, sectors: number) =>
  Promise.all(Array.from({ length: sectors }, (_, i) => fetch(`${baseUrl}/sectors/${i}`).then((r) => r.arrayBuffer())))

/** The monotonic clock of `.cpuprofile` samples, in µs. */
const nowMicros = () => Number(process.hrtime.bigint() / 1000n)

export const run = (
  serverUrl: Redacted.Redacted<string>,
  options: Options,
  log: (message: string) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const workload = Workload.fieldReport.sustained
    const source = yield* OpSource.make(workload).pipe(Random.withSeed(17))
    const loadAverageAtStart = os.loadavg()
    const load = (target: string, seconds: number) =>
      Effect.promise(() =>
        ClosedLoop.run(source, { targets: [target], connections: options.connections, opsPerRequest: 1, seconds })
      )
    /**
     * Every server of a round, started afresh: a process keeps an offset of about ±10 µs of CPU per request for its
     * whole life (how its code happened to be compiled), so each round gets processes of its own and the means over
     * the rounds average over as many processes as rounds.
     */
    const startAll = (round: number) =>
      Effect.gen(function*() {
        const bare = yield* HostProcess.start({}, { entry: baselineEntry, args: ["bare"] })
        const router = yield* HostProcess.start({}, { entry: baselineEntry, args: ["router"] })
        const host = yield* HostProcess.start({
          DATABASE_URL: yield* PgEmbedded.freshDatabase(serverUrl, `bench_lean_${round}`)
        })
        yield* Effect.promise(() => activate(host.baseUrl, workload.sectors))
        const baseline = options.baseline === undefined ? undefined : yield* HostProcess.start(
          { DATABASE_URL: yield* PgEmbedded.freshDatabase(serverUrl, `bench_lean_baseline_${round}`) },
          { entry: path.join(options.baseline, "apps/sector-host/src/main.ts") }
        )
        if (baseline !== undefined) yield* Effect.promise(() => activate(baseline.baseUrl, workload.sectors))
        const processes: Record<Server, HostProcess.Host | undefined> = {
          "bare node:http": bare,
          "effect HttpRouter": router,
          "sector-host": host,
          "sector-host, baseline": baseline
        }
        return processes
      })

    const figures: Array<Figure> = []
    for (let round = 0; round < options.rounds; round++) {
      yield* Effect.scoped(Effect.gen(function*() {
        const processes = yield* startAll(round)
        const measuredServers = servers.filter((server) => processes[server] !== undefined)
        for (const server of measuredServers) yield* load(processes[server]!.baseUrl, options.warmupSeconds)
        for (let i = 0; i < measuredServers.length; i++) {
          const server = measuredServers[(round + i) % measuredServers.length]!
          const target = processes[server]!
          const loadAverage = os.loadavg()[0]!
          const cpuBefore = target.cpuSeconds()
          const measured = yield* load(target.baseUrl, options.seconds)
          const cpu = target.cpuSeconds() - cpuBefore
          figures.push({
            server,
            round,
            loadAverage,
            requestsPerSecond: measured.requests / measured.seconds,
            cpuMicrosPerRequest: (cpu * 1e6) / measured.requests,
            latency: measured.latency,
            statuses: measured.statuses
          })
          yield* log(`lean round ${round + 1}: ${server} ${Math.round(measured.requests / measured.seconds)} requests/s`)
        }
        // every host stops cleanly (drained, exit 0): a host that did not is a failed run
        for (const server of measuredServers) yield* processes[server]!.stop
      }))
    }

    if (options.profileSeconds <= 0) return { options, loadAverageAtStart, figures } satisfies Result
    const dir = yield* Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "sectors-cpuprof-")))
    const profiled = yield* HostProcess.start(
      { DATABASE_URL: yield* PgEmbedded.freshDatabase(serverUrl, "bench_lean_profile") },
      { execArgv: ["--cpu-prof", `--cpu-prof-dir=${dir}`, "--cpu-prof-interval=250"] }
    )
    yield* Effect.promise(() => activate(profiled.baseUrl, workload.sectors))
    yield* load(profiled.baseUrl, options.warmupSeconds)
    const from = nowMicros()
    const measured = yield* load(profiled.baseUrl, options.profileSeconds)
    const to = nowMicros()
    yield* profiled.stop
    const raw = yield* Effect.promise(async () => {
      const [file] = (await fs.readdir(dir)).filter((name) => name.endsWith(".cpuprofile"))
      if (file === undefined) throw new Error(`no .cpuprofile written in ${dir}`)
      const text = await fs.readFile(path.join(dir, file), "utf8")
      await fs.rm(dir, { recursive: true, force: true })
      return JSON.parse(text) as CpuProfile.Raw
    })
    const profile = { ...CpuProfile.summarize(raw, { from, to }), requestsPerSecond: measured.requests / measured.seconds }
    return { options, loadAverageAtStart, figures, profile } satisfies Result
  }).pipe(Effect.scoped)
