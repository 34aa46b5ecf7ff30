/**
 * A cluster of real sector-host processes for the tests of `test/cluster/` (issue 14): N runners (`RUNNER_PORT`) on one
 * PostgreSQL, on loopback ports of their own that each keeps across restarts, and what the tests ask of it — wait
 * until the shards have settled, stop a host (SIGTERM) or kill it (SIGKILL), start it again on the same ports, add one,
 * read `GET /cluster`, a sector's epoch from every host, and a host's metrics.
 *
 * Ports come from `Port.freeAsync`, below Linux's ephemeral range (32768-60999): a restarted host wants its ports
 * back, and a port in that range can meanwhile be held by any outgoing connection (the cluster's own, PostgreSQL's) —
 * a run of `npm run cluster` failed so once (`EADDRINUSE`).
 */
import { Port } from "@sectors/pg-embedded"
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { call, type Host, startHost } from "./HostProcess.ts"
import { metric, scrape } from "./Observe.ts"

/** `GET /cluster` of a runner. */
export interface ClusterView {
  readonly mode: string
  readonly runner: string
  readonly runners: ReadonlyArray<{ readonly address: string; readonly healthy: boolean; readonly shards: number }>
  readonly sectors: ReadonlyArray<number>
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A runner's view of the cluster. */
export const view = async (host: Host): Promise<ClusterView> => (await call(host.baseUrl, "GET", "/cluster")).body as ClusterView

/** The sample of `name` in a host's `/metrics` with those labels (summed over the rest; 0 if absent). */
export const metricOf = async (host: Host, name: string, labels: Record<string, string> = {}): Promise<number> =>
  metric(await scrape(host.baseUrl), name, labels)

/** The epoch each of `hosts` answers for a sector (`GET /sectors/{id}`). */
export const epochs = (hosts: ReadonlyArray<Host>, sector: number): Promise<Array<number>> =>
  Promise.all(hosts.map(async (host) => {
    const reply = await call(host.baseUrl, "GET", `/sectors/${sector}`)
    if (reply.status !== 200) throw new Error(`GET /sectors/${sector} answered ${reply.status}: ${JSON.stringify(reply.body)}`)
    return reply.body.epoch as number
  }))

/** Resolves once every one of `hosts` sees exactly `hosts.length` healthy runners. */
export const awaitRunners = async (hosts: ReadonlyArray<Host>, timeoutMs = 30_000): Promise<Array<ClusterView>> => {
  const until = Date.now() + timeoutMs
  while (true) {
    const views = await Promise.all(hosts.map(view))
    if (views.every((v) => v.runners.filter((r) => r.healthy).length === hosts.length)) return views
    if (Date.now() > until) throw new Error(`not ${hosts.length} runners within ${timeoutMs} ms: ${JSON.stringify(views)}`)
    await sleep(100)
  }
}

/**
 * Resolves with each host's shard count once the cluster is settled: every host sees all `hosts` runners and holds
 * exactly the shards assigned to it (`effect_cluster_shards` against its count in `GET /cluster`), releasing none.
 * Until then shards still move, and a sector written meanwhile may be handed off — claimed again, a legitimate
 * epoch + 1.
 */
export const awaitSettled = async (hosts: ReadonlyArray<Host>, timeoutMs = 30_000): Promise<Array<number>> => {
  const until = Date.now() + timeoutMs
  await awaitRunners(hosts, timeoutMs)
  while (true) {
    const views = await Promise.all(hosts.map(view))
    const assigned = views.map((v) => v.runners.find((r) => r.address === v.runner)?.shards)
    const held = await Promise.all(hosts.map((h) => metricOf(h, "effect_cluster_shards")))
    const releasing = await Promise.all(hosts.map((h) => metricOf(h, "effect_cluster_shards_releasing")))
    if (held.every((n, i) => n === assigned[i]) && releasing.every((x) => x === 0)) return held
    if (Date.now() > until) throw new Error(`shards not settled within ${timeoutMs} ms: held ${held}, releasing ${releasing}`)
    await sleep(100)
  }
}

/** One host of the cluster: its ports, kept across restarts, and its process while it runs. */
export interface Member {
  readonly port: number
  readonly runnerPort: number
  /** The running process (the last one started). */
  readonly host: Host
  /** Every process started for this member, the first one first (their output survives them). */
  readonly lives: ReadonlyArray<Host>
  /** Whether its process runs. */
  readonly up: () => boolean
}

/** The cluster of a test. */
export interface Cluster {
  readonly members: ReadonlyArray<Member>
  /** The hosts that run, in member order. */
  readonly running: () => ReadonlyArray<Host>
  /** Base URLs of the hosts that run and are not `excluded` (the rotation of a load). */
  readonly urls: () => ReadonlyArray<string>
  /** Takes a member out of `urls` (as a load balancer takes a stopping host out) or puts it back. */
  readonly exclude: (i: number, excluded: boolean) => void
  /** Adds a member on ports of its own and starts it. */
  readonly add: () => Promise<Member>
  /** Starts member `i` again on its ports (after `stop` or `kill`). */
  readonly restart: (i: number) => Promise<Host>
  /** SIGTERM to member `i`; resolves with its exit once it has left the cluster and exited. */
  readonly stop: (i: number) => Promise<{ readonly code: number | null; readonly handoffMs: number | undefined }>
  /** SIGKILL to member `i`; resolves once it is gone. */
  readonly kill: (i: number) => Promise<void>
  /** `awaitSettled` over the hosts that run. */
  readonly settle: (timeoutMs?: number) => Promise<Array<number>>
}

/**
 * Every line any host of the cluster — those that stopped or died included — logged about a sector of its own claimed by
 * another owner (a persist fenced: two owners of one sector at one time; the line says how many accepted ops it lost).
 */
export const fencedLines = (cluster: Cluster): Array<string> =>
  cluster.members.flatMap((m) => m.lives).flatMap((host) =>
    host.output().split("\n").filter((line) => line.includes("claimed by another owner"))
  )

/** What the hosts of the cluster (stopped or dead ones included) logged about trouble with their shard locks. */
export interface LockTrouble {
  /**
   * Lock refreshes that failed: effect's `Sharding` then marks its lock storage unhealthy, force-releases every shard
   * of the host and interrupts the requests its sectors were serving.
   */
  readonly unhealthy: number
  /** Shard releases that did not finish in time and were retried (the shard stays unowned meanwhile). */
  readonly releaseRetries: number
}

/**
 * Counts the lock operations that exceeded their budget — `min(SHARD_LOCK_REFRESH_INTERVAL, expiration / 3)`, 1 s by
 * default — as the hosts logged them. (A shard acquisition that times out is retried without a log line.)
 */
export const lockTrouble = (cluster: Cluster): LockTrouble => {
  const lines = cluster.members.flatMap((m) => m.lives).flatMap((host) => host.output().split("\n"))
  return {
    unhealthy: lines.filter((line) => line.includes("Shard lock storage is unhealthy")).length,
    releaseRetries: lines.filter((line) => line.includes("Could not release shards, retrying")).length
  }
}

/** The handoff time a stopped host logged ("left the cluster in N ms"). */
export const handoffMs = (host: Host): number | undefined => {
  const match = /left the cluster in (\d+) ms/.exec(host.output())
  return match === null ? undefined : Number(match[1])
}

const alive = (host: Host) => host.child.exitCode === null && host.child.signalCode === null

/**
 * Starts `hosts` runners on the database at `url`, each with `env` (JSON logs, `SHUTDOWN_TIMEOUT` 20 s unless `env`
 * says), and waits until they listen (not until the shards settle: `settle`). Every host still running when the scope
 * closes is killed.
 */
export const make = (options: { readonly url: string; readonly hosts: number; readonly env?: Record<string, string> }) =>
  Effect.gen(function*() {
    const members: Array<{ port: number; runnerPort: number; lives: Array<Host> }> = []
    const excluded = new Set<number>()
    yield* Effect.addFinalizer((exit) =>
      Effect.promise(async () => {
        await Promise.all(members.flatMap((m) => m.lives).map(async (host) => {
          if (alive(host)) host.signal("SIGKILL")
          await host.exited
        }))
        // a failed test leaves every host's log behind, to read what the cluster did
        if (exit._tag === "Failure") {
          const dir = await fs.mkdtemp(path.join(os.tmpdir(), "sectors-cluster-"))
          for (const [i, m] of members.entries()) {
            for (const [j, host] of m.lives.entries()) await fs.writeFile(path.join(dir, `host-${i}-life-${j}.log`), host.output())
          }
          console.log(`[cluster] the hosts' logs are in ${dir}`)
        }
      })
    )
    const launch = (port: number, runnerPort: number) =>
      startHost({
        LOG_FORMAT: "json",
        SHUTDOWN_TIMEOUT: "20 seconds",
        ...options.env,
        DATABASE_URL: options.url,
        PORT: String(port),
        RUNNER_PORT: String(runnerPort)
      })
    const member = (m: (typeof members)[number]): Member => ({
      port: m.port,
      runnerPort: m.runnerPort,
      get host() {
        return m.lives[m.lives.length - 1]!
      },
      lives: m.lives,
      up: () => alive(m.lives[m.lives.length - 1]!)
    })
    const add = async () => {
      const port = await Port.freeAsync()
      const runnerPort = await Port.freeAsync()
      const m = { port, runnerPort, lives: [await launch(port, runnerPort)] }
      members.push(m)
      return member(m)
    }
    yield* Effect.promise(() => Promise.all(Array.from({ length: options.hosts }, add)))
    const running = () => members.map((m) => m.lives[m.lives.length - 1]!).filter(alive)
    const cluster: Cluster = {
      get members() {
        return members.map(member)
      },
      running,
      urls: () =>
        members.flatMap((m, i) => {
          const host = m.lives[m.lives.length - 1]!
          return alive(host) && !excluded.has(i) ? [host.baseUrl] : []
        }),
      exclude: (i, out) => void (out ? excluded.add(i) : excluded.delete(i)),
      add,
      restart: async (i) => {
        const m = members[i]!
        if (alive(m.lives[m.lives.length - 1]!)) throw new Error(`member ${i} still runs`)
        const host = await launch(m.port, m.runnerPort)
        m.lives.push(host)
        return host
      },
      stop: async (i) => {
        const host = members[i]!.lives[members[i]!.lives.length - 1]!
        host.signal("SIGTERM")
        const exit = await host.exited
        return { code: exit.code, handoffMs: handoffMs(host) }
      },
      kill: async (i) => {
        const host = members[i]!.lives[members[i]!.lives.length - 1]!
        host.signal("SIGKILL")
        await host.exited
      },
      settle: (timeoutMs) => awaitSettled(running(), timeoutMs)
    }
    return cluster
  })
