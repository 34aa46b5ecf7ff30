/**
 * What clustering costs (issue 14), through the HTTP API of real `sector-host` processes, each layout on a fresh
 * database of the same PostgreSQL and under the same closed-loop load (`ClosedLoop`: `connections` keep-alive
 * connections, requests of `opsPerRequest` ops, `ack=accepted`, the sustained workload's 50 sectors):
 *
 * - **standalone**: one host without `RUNNER_PORT` (sectors called directly);
 * - **standalone with keys**: the same with an `Idempotency-Key` on every request — what every submission through
 *   the cluster carries (the client's key or a request id of its own), so the cost of deduplication apart;
 * - **cluster of one**: one host with `RUNNER_PORT` (every call goes through the `Sector` entity, its owner local);
 * - **three runners**, the load round-robin over all three; each request is tagged by whether it went to the sector's
 *   owner (found in `GET /cluster` after the warm-up) or was forwarded, and a probe without load sends one request at a
 *   time alternately to the owner and to another host: the forwarding overhead.
 *
 * A host's run starts once it listens and, clustered, once the cluster is settled (every runner holds exactly the
 * shards assigned to it, none releasing: `effect_cluster_shards` in `/metrics` against `GET /cluster`); then every
 * sector is activated and a warm-up run precedes the measured one. With a `baseline` checkout (`--baseline <dir>`)
 * its host is measured standalone too, alternately with this one's (baseline, current, baseline, current): the
 * regression check of a standalone host against an earlier commit.
 *
 * **Gotchas** on a machine with few cores the hosts, PostgreSQL and the generator share them: three hosts there
 * show the overhead of clustering, not scale-out.
 */
import { PgEmbedded, Port } from "@sectors/pg-embedded"
import { OpSource, type Summary, Workload } from "@sectors/workloads"
import { Effect, Random, type Redacted } from "effect"
import { execFileSync } from "node:child_process"
import * as os from "node:os"
import * as path from "node:path"
import * as ClosedLoop from "./ClosedLoop.ts"
import * as HostProcess from "./HostProcess.ts"

/** How the suite runs. */
export interface Options {
  readonly connections: number
  readonly opsPerRequest: number
  /** Length of each measured run. */
  readonly seconds: number
  /** Length of the warm-up run before it (not measured). */
  readonly warmupSeconds: number
  /** Requests of the forwarding probe (half to owners, half forwarded). */
  readonly probeRequests: number
  /** Another checkout (its root) whose host is measured standalone alternately with this one's. */
  readonly baseline?: string | undefined
}

/** One measured run of one layout. */
export interface Figure extends ClosedLoop.Result {
  readonly hosts: number
  /** The 1-minute load average when the measured run began (the bench's own earlier runs included). */
  readonly loadAverage: number
}

/** Everything the suite measured. */
export interface Result {
  readonly connections: number
  readonly opsPerRequest: number
  readonly seconds: number
  readonly warmupSeconds: number
  /** The 1-minute load average when the suite began, before it started anything. */
  readonly loadAverageAtStart?: number | undefined
  /** This checkout's standalone host: one run, or two alternating with the baseline's. */
  readonly standalone: ReadonlyArray<Figure>
  /** This checkout's standalone host, every request with an `Idempotency-Key`. */
  readonly standaloneKeyed?: Figure | undefined
  readonly baseline?: { readonly checkout: string; readonly commit: string; readonly runs: ReadonlyArray<Figure> } | undefined
  readonly clusterOfOne: Figure
  readonly three: Figure & {
    /** Sectors owned by each host after the warm-up. */
    readonly ownedPerHost: ReadonlyArray<number>
    /** Sectors whose owner had changed by the end of the measured run (0 when the cluster stayed settled). */
    readonly ownersMoved: number
    /** One request at a time: latency to the owner (`owner`) and through another host (`forwarded`). */
    readonly probe: Readonly<Record<string, Summary.Summary>>
  }
}

/** `GET /cluster` of a runner (the fields used here). */
interface ClusterView {
  readonly runner: string
  readonly runners: ReadonlyArray<{ readonly address: string; readonly healthy: boolean; readonly shards: number }>
  readonly sectors: ReadonlyArray<number>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const clusterOf = async (host: HostProcess.Host): Promise<ClusterView> =>
  (await (await fetch(`${host.baseUrl}/cluster`)).json()) as ClusterView

/** A gauge of a host's `/metrics` (without attributes). */
const gauge = async (host: HostProcess.Host, name: string): Promise<number> => {
  const text = await (await fetch(`${host.baseUrl}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

/**
 * Resolves once the cluster is settled: every host sees all of them healthy and holds exactly the shards assigned to
 * it, releasing none. Until then shards still move and a measured request could wait for a handoff.
 */
const awaitSettled = async (hosts: ReadonlyArray<HostProcess.Host>, timeoutMs = 60_000) => {
  const until = Date.now() + timeoutMs
  while (true) {
    const views = await Promise.all(hosts.map(clusterOf))
    if (views.every((v) => v.runners.filter((r) => r.healthy).length === hosts.length)) {
      const assigned = views.map((v) => v.runners.find((r) => r.address === v.runner)?.shards)
      const held = await Promise.all(hosts.map((h) => gauge(h, "effect_cluster_shards")))
      const releasing = await Promise.all(hosts.map((h) => gauge(h, "effect_cluster_shards_releasing")))
      if (held.every((n, i) => n === assigned[i]) && releasing.every((n) => n === 0)) return
    }
    if (Date.now() > until) throw new Error(`cluster of ${hosts.length} not settled within ${timeoutMs} ms`)
    await sleep(100)
  }
}

/** The owner (index in `hosts`) of every sector resident on one of them. */
const ownersOf = async (hosts: ReadonlyArray<HostProcess.Host>) => {
  const owners = new Map<number, number>()
  const views = await Promise.all(hosts.map(clusterOf))
  views.forEach((view, i) => {
    for (const sector of view.sectors) {
      if (owners.has(sector)) throw new Error(`sector ${sector} resident on two hosts`)
      owners.set(sector, i)
    }
  })
  return owners
}

const workload = Workload.fieldReport.sustained

/** Activates every sector of the workload (a read each, round-robin over the hosts). */
const activate = async (hosts: ReadonlyArray<HostProcess.Host>) => {
  await Promise.all(Array.from({ length: workload.sectors }, async (_, i) => {
    const response = await fetch(`${hosts[i % hosts.length]!.baseUrl}/sectors/${i}`)
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`activating sector ${i}: ${response.status}`)
  }))
}

/**
 * Starts `count` hosts on a fresh database (runners when `clustered`), waits until they are ready, warms up, runs
 * `measure` with them, and stops them one after the other (each must exit 0).
 */
const layout = <A>(
  serverUrl: Redacted.Redacted<string>,
  spec: { readonly count: number; readonly clustered: boolean; readonly entry?: string | undefined },
  options: Options,
  measure: (hosts: ReadonlyArray<HostProcess.Host>, source: OpSource.OpSource) => Promise<A>
) =>
  Effect.gen(function*() {
    const url = yield* PgEmbedded.freshDatabase(serverUrl, "bench_cluster")
    const hosts = yield* Effect.all(
      Array.from({ length: spec.count }, () =>
        Effect.flatMap(Port.free, (runnerPort) =>
          HostProcess.start(
            { DATABASE_URL: url, ...(spec.clustered ? { RUNNER_PORT: String(runnerPort) } : {}) },
            { entry: spec.entry }
          ))),
      { concurrency: "unbounded" }
    )
    // the same ops in every layout
    const source = yield* OpSource.make(workload).pipe(Random.withSeed(14))
    const result = yield* Effect.promise(async () => {
      if (spec.clustered) await awaitSettled(hosts)
      await activate(hosts)
      await ClosedLoop.run(source, { ...loadOf(options), targets: hosts.map((h) => h.baseUrl), seconds: options.warmupSeconds })
      return measure(hosts, source)
    })
    for (const host of hosts) yield* host.stop
    return result
  }).pipe(Effect.scoped)

const loadOf = (options: Options) => ({ connections: options.connections, opsPerRequest: options.opsPerRequest })

/** One measured closed-loop run over `hosts`, with the load average it began at. */
const measured = async (
  hosts: ReadonlyArray<HostProcess.Host>,
  source: OpSource.OpSource,
  options: Options,
  extra: { readonly classify?: (target: number, sector: number) => string; readonly idempotencyKeys?: boolean } = {}
): Promise<Figure> => {
  const loadAverage = os.loadavg()[0]!
  const result = await ClosedLoop.run(source, {
    ...loadOf(options),
    targets: hosts.map((h) => h.baseUrl),
    seconds: options.seconds,
    ...extra
  })
  return { ...result, hosts: hosts.length, loadAverage }
}

/** The commit a checkout is at (short hash), or `?` if git cannot say. */
const commitOf = (checkout: string) => {
  try {
    return execFileSync("git", ["-C", checkout, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
  } catch {
    return "?"
  }
}

/** Runs the suite on the PostgreSQL server at `serverUrl`, logging each step with `log`. */
export const run = (
  serverUrl: Redacted.Redacted<string>,
  options: Options,
  log: (message: string) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const loadAverageAtStart = os.loadavg()[0]!
    const standaloneOf = (entry?: string) =>
      layout(serverUrl, { count: 1, clustered: false, entry }, options, (hosts, source) => measured(hosts, source, options))
    const standalone: Array<Figure> = []
    let baseline: Result["baseline"]
    if (options.baseline === undefined) {
      yield* log("cluster: standalone host")
      standalone.push(yield* standaloneOf())
    } else {
      const entry = path.join(options.baseline, "apps/sector-host/src/main.ts")
      const runs: Array<Figure> = []
      const commit = commitOf(options.baseline)
      for (let round = 1; round <= 2; round++) {
        yield* log(`cluster: standalone host of ${options.baseline} (${commit}), round ${round}`)
        runs.push(yield* standaloneOf(entry))
        yield* log(`cluster: standalone host, round ${round}`)
        standalone.push(yield* standaloneOf())
      }
      baseline = { checkout: options.baseline, commit, runs }
    }
    yield* log("cluster: standalone host, an Idempotency-Key on every request")
    const standaloneKeyed = yield* layout(serverUrl, { count: 1, clustered: false }, options, (hosts, source) =>
      measured(hosts, source, options, { idempotencyKeys: true }))
    yield* log("cluster: a cluster of one")
    const clusterOfOne = yield* layout(serverUrl, { count: 1, clustered: true }, options, (hosts, source) =>
      measured(hosts, source, options))
    yield* log("cluster: three runners, round-robin")
    const three = yield* layout(serverUrl, { count: 3, clustered: true }, options, async (hosts, source) => {
      const owners = await ownersOf(hosts)
      const ownedPerHost = hosts.map((_, i) => [...owners.values()].filter((owner) => owner === i).length)
      const figure = await measured(hosts, source, options, {
        classify: (target, sector) =>
          owners.get(sector) === undefined ? "unknown" : owners.get(sector) === target ? "owner" : "forwarded"
      })
      const after = await ownersOf(hosts)
      const ownersMoved = [...owners].filter(([sector, owner]) => after.get(sector) !== owner).length
      // without load: even requests to the owner, odd ones through one of the other hosts, in turn
      const probe = await ClosedLoop.probe(source, {
        targets: hosts.map((h) => h.baseUrl),
        opsPerRequest: options.opsPerRequest,
        requests: options.probeRequests,
        pick: (i, sector) => {
          const owner = owners.get(sector) ?? 0
          return i % 2 === 0
            ? { target: owner, tag: "owner" }
            : { target: (owner + 1 + ((i >> 1) % (hosts.length - 1))) % hosts.length, tag: "forwarded" }
        }
      })
      return { ...figure, ownedPerHost, ownersMoved, probe }
    })
    return {
      connections: options.connections,
      opsPerRequest: options.opsPerRequest,
      seconds: options.seconds,
      warmupSeconds: options.warmupSeconds,
      loadAverageAtStart,
      standalone,
      standaloneKeyed,
      baseline,
      clusterOfOne,
      three
    } satisfies Result
  })
