/**
 * A free TCP port on 127.0.0.1. The embedded server listens on one unless told otherwise, and the tests and the bench
 * start hosts, proxies and servers of their own on one; this is the only place that picks them.
 *
 * Ports come from below the operating system's range for outgoing connections (Linux's `ip_local_port_range`,
 * 32768–60999 by default), drawn at random and tried with a listen: a port in that range can be taken, between being
 * picked and being listened on, as the source port of any outgoing connection (a test's own, PostgreSQL's) — on a
 * busy test machine that made a host fail to start with `EADDRINUSE` now and then. One process never hands out the
 * same port twice. Where no such room exists below the range, the operating system picks (a listen on port 0).
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as net from "node:net"

/** The lowest port the operating system gives outgoing connections (32768 when it cannot be read). */
export const ephemeralLow = (): number => {
  try {
    const low = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
    return Number.isInteger(low) && low > 0 && low <= 65_535 ? low : 32_768
  } catch {
    return 32_768
  }
}

/** How many ports below the range ports are drawn from. */
const window = 12_000

/** Ports this process handed out. */
const handedOut = new Set<number>()

/** Whether a listen on `port` of 127.0.0.1 succeeds now (the port is closed again at once). */
const listens = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/** A port the operating system picks (a listen on port 0). */
const anyPort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** A free TCP port on 127.0.0.1, for plain async code (vitest's globalSetup, the cluster starter, test helpers). */
export const freeAsync = async (): Promise<number> => {
  const high = ephemeralLow()
  const low = Math.max(1_024, high - window)
  for (let attempt = 0; high - low >= 1_000 && attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low))
    if (!handedOut.has(port) && await listens(port)) {
      handedOut.add(port)
      return port
    }
  }
  return anyPort()
}

/** A free TCP port on 127.0.0.1 (a defect if the operating system refuses to hand one out). */
export const free: Effect.Effect<number> = Effect.promise(freeAsync)
