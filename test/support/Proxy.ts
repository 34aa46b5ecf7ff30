/**
 * A loopback TCP proxy for fault tests: it listens on 127.0.0.1, forwards every connection to a target (the test's
 * PostgreSQL server) and holds every chunk back by an adjustable one-way delay, in both directions, so the host sees
 * a slow network to its database without the database itself changing. Each direction of each connection keeps its
 * order (a chunk never overtakes an earlier one, even when the delay shrinks), and an end of stream is delayed like
 * data. It also counts round trips (turns from the server talking to the client talking again).
 *
 * Gotchas: there is no backpressure — a delayed direction buffers everything that arrives within one delay, which is
 * fine for the moderate loads of tests and would not be for a bulk copy. `throughProxy` rewrites only host and port
 * of a URL; user, password, database and parameters are kept.
 */
import * as net from "node:net"
import { performance } from "node:perf_hooks"

/** A running proxy. */
export interface Proxy {
  /** Port it listens on, on 127.0.0.1. */
  readonly port: number
  /** Sets the one-way delay of every chunk from now on, in milliseconds (0: forward at once). */
  readonly setLatency: (millis: number) => void
  /** Round trips since the proxy started: times a client sent data after it last received some (its first send too). */
  readonly roundTrips: () => number
  /** Stops listening and destroys every connection. */
  readonly close: () => Promise<void>
}

/** The target of a proxy. */
export interface Target {
  readonly host: string
  readonly port: number
}

/** Options of `start`. */
export interface Options {
  /** Where connections are forwarded to. */
  readonly target: Target
  /** One-way delay to begin with, in milliseconds. Defaults to 0. */
  readonly latencyMs?: number | undefined
}

/** Host and port of a `postgres://` URL (port 5432 when it names none; `localhost` as 127.0.0.1). */
export const targetOf = (url: string): Target => {
  const parsed = new URL(url)
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1")
  return { host: host === "localhost" ? "127.0.0.1" : host, port: parsed.port === "" ? 5432 : Number(parsed.port) }
}

/** `url` with its host and port replaced by the proxy's: the same database, reached through the proxy. */
export const throughProxy = (url: string, proxy: Proxy): string => {
  const parsed = new URL(url)
  parsed.hostname = "127.0.0.1"
  parsed.port = String(proxy.port)
  return parsed.toString()
}

/**
 * Forwards `from` to `to`, each chunk (and the end of stream) `delay()` ms after it arrived and never before an
 * earlier one. Returns a function that drops what is still held back.
 */
const delayedPipe = (
  from: net.Socket,
  to: net.Socket,
  delay: () => number,
  onChunk: () => void
): () => void => {
  const held: Array<{ readonly due: number; readonly chunk: Buffer | null }> = []
  let timer: NodeJS.Timeout | undefined
  let lastDue = 0
  const deliver = (chunk: Buffer | null) => {
    if (to.destroyed) return
    if (chunk === null) to.end()
    else to.write(chunk)
  }
  const drain = () => {
    timer = undefined
    const now = performance.now()
    while (held.length > 0 && held[0]!.due <= now) deliver(held.shift()!.chunk)
    if (held.length > 0) timer = setTimeout(drain, Math.max(1, Math.ceil(held[0]!.due - now)))
  }
  const push = (chunk: Buffer | null) => {
    const millis = delay()
    if (millis <= 0 && held.length === 0) return deliver(chunk)
    // never before an earlier chunk: the delay may have shrunk since it was held back
    lastDue = Math.max(performance.now() + millis, lastDue)
    held.push({ due: lastDue, chunk })
    if (timer === undefined) timer = setTimeout(drain, Math.max(1, Math.ceil(millis)))
  }
  from.on("data", (chunk: Buffer) => {
    onChunk()
    push(chunk)
  })
  from.on("end", () => push(null))
  return () => {
    if (timer !== undefined) clearTimeout(timer)
    held.length = 0
  }
}

/** Starts a proxy on 127.0.0.1 (a free port) in front of `options.target`. */
export const start = ({ latencyMs = 0, target }: Options): Promise<Proxy> =>
  new Promise((resolve, reject) => {
    let delay = latencyMs
    let roundTrips = 0
    /** Every open connection, by the function that tears it down. */
    const open = new Set<() => void>()
    const server = net.createServer({ allowHalfOpen: true }, (client) => {
      const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true })
      let clientSpokeLast = false
      const dropUp = delayedPipe(client, upstream, () => delay, () => {
        if (!clientSpokeLast) roundTrips++
        clientSpokeLast = true
      })
      const dropDown = delayedPipe(upstream, client, () => delay, () => {
        clientSpokeLast = false
      })
      const destroy = () => {
        dropUp()
        dropDown()
        client.destroy()
        upstream.destroy()
        open.delete(destroy)
      }
      open.add(destroy)
      let closed = 0
      for (const socket of [client, upstream]) {
        socket.setNoDelay(true)
        // a failure on either side resets both; a graceful end travels through the pipe like data
        socket.on("error", destroy)
        socket.on("close", (hadError) => {
          if (hadError || ++closed === 2) destroy()
        })
      }
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      resolve({
        port,
        setLatency: (millis) => {
          delay = millis
        },
        roundTrips: () => roundTrips,
        close: () =>
          new Promise<void>((done) => {
            for (const destroy of [...open]) destroy()
            server.close(() => done())
          })
      })
    })
  })
