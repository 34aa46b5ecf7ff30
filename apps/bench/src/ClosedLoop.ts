/**
 * A closed-loop HTTP load generator: `connections` loops, each sending one request of `opsPerRequest` ops at a time
 * (`POST /sectors/{id}/ops?ack=accepted`) and the next as soon as the answer is read, over keep-alive connections on
 * loopback (a `node:http` agent per target host, at most `connections` sockets each). The offered load is whatever the
 * hosts answer, so ops/s is their capacity with this many requests in flight, and latency is the time a request
 * waited for its answer. Ops and sectors come from a `@sectors/workloads` `OpSource` (seeded by the caller).
 *
 * With several targets, each loop sends its requests to them in turn (loop `i`'s `k`-th request to target
 * `(i + k) mod n`), so the load is spread round-robin over every host. `classify` tags each request (for instance: was
 * the target the sector's owner?) and the latencies are summarised per tag too.
 */
import { type Op } from "@sectors/core"
import { type OpSource, Summary } from "@sectors/workloads"
import { randomUUID } from "node:crypto"
import * as http from "node:http"

/** How the load is shaped. */
export interface Options {
  /** `http://127.0.0.1:<port>` of each host, sent to in turn. */
  readonly targets: ReadonlyArray<string>
  /** Loops, each with one request in flight. */
  readonly connections: number
  readonly opsPerRequest: number
  readonly seconds: number
  /** A tag per request, from where it went and for which sector. */
  readonly classify?: ((target: number, sector: number) => string) | undefined
  /** Send a fresh `Idempotency-Key` with every request (what a careful client does). Defaults to `false`. */
  readonly idempotencyKeys?: boolean | undefined
}

/** What one run measured. */
export interface Result {
  readonly seconds: number
  readonly requests: number
  /** Ops accepted (202/200) per second. */
  readonly opsPerSecond: number
  /** Request latency, ms, of every answered request. */
  readonly latency: Summary.Summary
  /** Answers by status code (`0`: no answer, a transport error). */
  readonly statuses: Readonly<Record<string, number>>
  /** Request latency by tag (`classify`). */
  readonly byTag: Readonly<Record<string, Summary.Summary>>
}

/** An agent per target: keep-alive, at most `connections` sockets, none dropped while the loops run. */
const agentFor = (connections: number) =>
  new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections, scheduling: "lifo" })

/** One POST with a JSON body; resolves with the status once the whole answer was read (0 on a transport error). */
export const post = (agent: http.Agent, url: URL, path: string, body: string, key?: string): Promise<number> =>
  new Promise((resolve) => {
    const request = http.request({
      agent,
      host: url.hostname,
      port: url.port,
      path,
      method: "POST",
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        ...(key === undefined ? {} : { "idempotency-key": key })
      }
    }, (response) => {
      response.on("data", () => {})
      response.on("end", () => resolve(response.statusCode ?? 0))
      response.on("error", () => resolve(0))
    })
    request.on("error", () => resolve(0))
    request.end(body)
  })

/** Runs the loops for `options.seconds` against the hosts and returns what they measured. */
export const run = async (source: OpSource.OpSource, options: Options): Promise<Result> => {
  const urls = options.targets.map((target) => new URL(target))
  const agents = urls.map(() => agentFor(options.connections))
  const latencies: Array<number> = []
  const tagged = new Map<string, Array<number>>()
  const statuses = new Map<number, number>()
  let accepted = 0
  let requests = 0
  const keyPrefix = randomUUID()
  const start = performance.now()
  const end = start + options.seconds * 1000
  const loop = async (index: number) => {
    for (let k = 0; performance.now() < end; k++) {
      const target = (index + k) % urls.length
      const sector = source.sector()
      const ops: Array<Op.Op> = Array.from({ length: options.opsPerRequest }, () => source.op())
      const sent = performance.now()
      const key = options.idempotencyKeys === true ? `bench-${index}-${k}-${keyPrefix}` : undefined
      const status = await post(agents[target]!, urls[target]!, `/sectors/${sector}/ops?ack=accepted`, JSON.stringify({ ops }), key)
      const elapsed = performance.now() - sent
      requests++
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
      if (status === 0) continue
      if (status === 200 || status === 202) accepted += options.opsPerRequest
      latencies.push(elapsed)
      if (options.classify !== undefined) {
        const tag = options.classify(target, sector)
        let samples = tagged.get(tag)
        if (samples === undefined) tagged.set(tag, samples = [])
        samples.push(elapsed)
      }
    }
  }
  await Promise.all(Array.from({ length: options.connections }, (_, i) => loop(i)))
  const seconds = (performance.now() - start) / 1000
  for (const agent of agents) agent.destroy()
  return {
    seconds,
    requests,
    opsPerSecond: accepted / seconds,
    latency: Summary.summarize(latencies),
    statuses: Object.fromEntries(statuses),
    byTag: Object.fromEntries([...tagged].map(([tag, samples]) => [tag, Summary.summarize(samples)]))
  }
}

/**
 * One request at a time, `requests` of them, each to the target `pick` chooses for its sector (for instance the
 * sector's owner, then a host that is not): the latency of each kind without load, tagged as `pick` says.
 */
export const probe = async (
  source: OpSource.OpSource,
  options: {
    readonly targets: ReadonlyArray<string>
    readonly opsPerRequest: number
    readonly requests: number
    readonly pick: (request: number, sector: number) => { readonly target: number; readonly tag: string }
  }
): Promise<Readonly<Record<string, Summary.Summary>>> => {
  const urls = options.targets.map((target) => new URL(target))
  const agents = urls.map(() => agentFor(1))
  const tagged = new Map<string, Array<number>>()
  for (let i = 0; i < options.requests; i++) {
    const sector = source.sector()
    const { tag, target } = options.pick(i, sector)
    const ops: Array<Op.Op> = Array.from({ length: options.opsPerRequest }, () => source.op())
    const sent = performance.now()
    const status = await post(agents[target]!, urls[target]!, `/sectors/${sector}/ops?ack=accepted`, JSON.stringify({ ops }))
    if (status !== 200 && status !== 202) continue
    let samples = tagged.get(tag)
    if (samples === undefined) tagged.set(tag, samples = [])
    samples.push(performance.now() - sent)
  }
  for (const agent of agents) agent.destroy()
  return Object.fromEntries([...tagged].map(([tag, samples]) => [tag, Summary.summarize(samples)]))
}
