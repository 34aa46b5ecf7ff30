/**
 * A load generator over the host's HTTP API that remembers exactly what it sent and what was acknowledged, so a
 * fault test can check the database against the reference fold afterwards.
 *
 * Each sector is driven by one loop that sends one request at a time (so the seqs of a sector's requests follow
 * each other), from a deterministic op stream. 429 and 503 mean nothing was applied: the loop waits the
 * `Retry-After` (capped) and sends the same ops again. A request without an answer (connection reset when a host
 * dies) is *uncertain*: its ops may or may not have been accepted; `History` resolves that against the database.
 * A refused connection (nothing listens: a host of a cluster is down) sent nothing, so the loop sends the same ops
 * to the next host. The history outlives the host process, so a test can restart the host and keep loading.
 */
import type { Op } from "@sectors/core"
import { Arbitraries } from "@sectors/core/testing"
import * as fc from "fast-check"

/** One request the host acknowledged. */
export interface Acked {
  readonly ops: ReadonlyArray<Op.Op>
  readonly firstSeq: number
  readonly lastSeq: number
  /** Whether the answer said the ops were durable (`ack=durable`). */
  readonly durable: boolean
  /** `Date.now()` when the answer arrived. */
  readonly at: number
}

/** What one sector has been sent. */
export interface SectorHistory {
  readonly acked: Array<Acked>
  /** A request that got no answer; its ops follow the last acked ones if they were accepted. */
  uncertain: ReadonlyArray<Op.Op> | undefined
}

/** Everything a load run saw, across host restarts. */
export class History {
  readonly sectors = new Map<number, SectorHistory>()
  /** Answers by status code. */
  readonly statuses = new Map<number, number>()
  /** 429/503 answers without a Retry-After header. */
  missingRetryAfter = 0
  /** The first few of them (status and body), to say which refusal it was. */
  readonly missingRetryAfterSample: Array<string> = []
  /** The slowest answer (ms). */
  slowest = 0
  /** Requests that got no answer. */
  unanswered = 0
  /** Connections refused (nothing was sent; the same ops went to the next host). */
  refusedConnections = 0
  /** Acknowledgements of a resend that the host recognised by its `Idempotency-Key` (`replayed`: applied before). */
  replayed = 0
  /** Refusals (429, 503) by status and problem type. */
  readonly refusals = new Map<string, number>()

  sector(id: number): SectorHistory {
    let found = this.sectors.get(id)
    if (found === undefined) {
      found = { acked: [], uncertain: undefined }
      this.sectors.set(id, found)
    }
    return found
  }

  /** The next seq the sector would give (after the last acked op). */
  nextSeq(id: number): number {
    const acked = this.sector(id).acked
    return acked.length === 0 ? 1 : acked[acked.length - 1]!.lastSeq + 1
  }

  /**
   * The ops with seq 1 … `persistedSeq` in order: the acked ones, plus the uncertain request's when the database
   * shows them durable. Fails if the acked requests leave a gap.
   */
  durablePrefix(id: number, persistedSeq: number): ReadonlyArray<Op.Op> {
    const history = this.sector(id)
    const ops: Array<Op.Op> = []
    let next = 1
    for (const acked of history.acked) {
      if (acked.firstSeq !== next) throw new Error(`sector ${id}: acked seqs jump from ${next} to ${acked.firstSeq}`)
      ops.push(...acked.ops)
      next = acked.lastSeq + 1
    }
    if (history.uncertain !== undefined && persistedSeq >= next) ops.push(...history.uncertain)
    return ops.slice(0, persistedSeq)
  }

  /** Ops acknowledged so far (202, 200 or 504), over all sectors. */
  acceptedOps(): number {
    let ops = 0
    for (const sector of this.sectors.values()) for (const acked of sector.acked) ops += acked.ops.length
    return ops
  }

  /**
   * The longest a sector went without an acknowledgement between `from` and `to` (Date.now()): the largest gap
   * between consecutive acks of one sector, counting `from` as the start of the first gap and `to` as the end of the
   * last — what a client saw as a stall, retries of refused requests included.
   */
  longestStall(from: number, to: number): { readonly sector: number; readonly ms: number } {
    let longest = { sector: -1, ms: 0 }
    for (const [sector, { acked }] of this.sectors) {
      let previous = from
      for (const at of [...acked.map((a) => a.at).filter((at) => at > from && at < to), to]) {
        if (at - previous > longest.ms) longest = { sector, ms: at - previous }
        previous = at
      }
    }
    return longest
  }

  count(status: number) {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1)
  }
}

/** How to load. */
export interface Options {
  readonly sectors: number
  readonly opsPerRequest: number
  /** Pause between a sector's requests (ms). Defaults to 5. */
  readonly pauseMs?: number | undefined
  /** Every n-th request asks `ack=durable`. Defaults to never. */
  readonly durableEvery?: number | undefined
  readonly seed?: number | undefined
  /** Entities per sector the ops draw from. Defaults to 40. */
  readonly entities?: number | undefined
  /** Of them, how many get most of the writes. Defaults to 6. */
  readonly hot?: number | undefined
  /** Longest wait honoured from a Retry-After (ms). Defaults to 500. */
  readonly maxRetryWaitMs?: number | undefined
  /**
   * Sends every request with an `Idempotency-Key`, the same on every resend of its ops, as a client must where a
   * refusal can mean "perhaps applied" (a 503 `sector-unreachable` of a cluster). Defaults to false.
   */
  readonly idempotencyKeys?: boolean | undefined
}

/** A running load against `baseUrl`; `stop` ends it and waits for the requests under way. */
export interface Running {
  readonly stop: () => Promise<void>
}

/** Deterministic op streams, one per sector (and key space). */
const streams = new Map<string, Array<Op.Op>>()
const opsFor = (
  seed: number,
  sector: number,
  from: number,
  count: number,
  space: { readonly entities: number; readonly hot: number }
): ReadonlyArray<Op.Op> => {
  const key = `${seed}:${sector}:${space.entities}:${space.hot}`
  let stream = streams.get(key)
  if (stream === undefined) {
    stream = []
    streams.set(key, stream)
  }
  while (stream.length < from + count) {
    stream.push(...fc.sample(Arbitraries.ops(space, { min: 500, max: 500 }), { numRuns: 1, seed: seed * 1000 + sector + stream.length })[0]!)
  }
  return stream.slice(from, from + count)
}

/** Whether a failed fetch never reached a server (nothing listened), so nothing was sent. */
const refused = (error: unknown): boolean =>
  error instanceof Error && (error.cause as { code?: unknown } | undefined)?.code === "ECONNREFUSED"

/**
 * Starts loading `baseUrl`, recording into `history`. Given several URLs (the hosts of a cluster), each sector's loop
 * sends its requests to them in turn; given a function, it asks before every request (a rotation that changes, the
 * way a load balancer takes a stopping host out).
 */
export const start = (
  baseUrl: string | ReadonlyArray<string> | (() => ReadonlyArray<string>),
  history: History,
  options: Options
): Running => {
  const urls = typeof baseUrl === "function" ? baseUrl : () => typeof baseUrl === "string" ? [baseUrl] : baseUrl
  let running = true
  const seed = options.seed ?? 1
  const loop = async (sector: number) => {
    const state = history.sector(sector)
    let sent = state.acked.reduce((n, a) => n + a.ops.length, 0)
    let requests = 0
    let attempts = sector
    let ops: ReadonlyArray<Op.Op> | undefined
    while (running) {
      if (state.uncertain !== undefined) return // resolved by the test, against the database
      ops ??= opsFor(seed, sector, sent, options.opsPerRequest, { entities: options.entities ?? 40, hot: options.hot ?? 6 })
      const durable = options.durableEvery !== undefined && ++requests % options.durableEvery === 0
      const started = Date.now()
      const rotation = urls()
      let response: Response
      try {
        response = await fetch(`${rotation[attempts++ % rotation.length]}/sectors/${sector}/ops?ack=${durable ? "durable" : "accepted"}`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(options.idempotencyKeys === true ? { "idempotency-key": `load-${seed}-${sector}-${sent}` } : {})
          },
          body: JSON.stringify({ ops })
        })
      } catch (error) {
        if (refused(error)) {
          history.refusedConnections++
          await new Promise((r) => setTimeout(r, 50))
          continue
        }
        history.unanswered++
        state.uncertain = ops
        return
      }
      const body = (await response.json().catch(() => ({}))) as {
        firstSeq?: number
        lastSeq?: number
        type?: string
      }
      history.slowest = Math.max(history.slowest, Date.now() - started)
      history.count(response.status)
      if (response.status === 200 || response.status === 202) {
        if (response.headers.get("idempotent-replayed") === "true") history.replayed++
        state.acked.push({ ops, firstSeq: body.firstSeq!, lastSeq: body.lastSeq!, durable: response.status === 200, at: Date.now() })
        sent += ops.length
        ops = undefined
        await new Promise((r) => setTimeout(r, options.pauseMs ?? 5))
      } else if (response.status === 429 || response.status === 503) {
        const refusal = `${response.status} ${body.type ?? "(no problem type)"}`
        history.refusals.set(refusal, (history.refusals.get(refusal) ?? 0) + 1)
        const retryAfter = response.headers.get("retry-after")
        if (retryAfter === null && history.missingRetryAfter++ < 5) {
          history.missingRetryAfterSample.push(`${response.status} ${JSON.stringify(body)}`)
        }
        const wait = Math.min(options.maxRetryWaitMs ?? 500, Number(retryAfter ?? 1) * 1000)
        await new Promise((r) => setTimeout(r, wait))
      } else if (response.status === 504) {
        // a durable wait timed out: the ops were accepted all the same (the problem carries their seqs)
        state.acked.push({ ops, firstSeq: body.firstSeq!, lastSeq: body.lastSeq!, durable: false, at: Date.now() })
        sent += ops.length
        ops = undefined
      } else {
        throw new Error(`sector ${sector}: unexpected ${response.status}: ${JSON.stringify(body)}`)
      }
    }
  }
  const loops = Array.from({ length: options.sectors }, (_, sector) =>
    loop(sector).catch((error) => {
      running = false
      throw error
    }))
  return {
    stop: async () => {
      running = false
      await Promise.all(loops)
    }
  }
}
