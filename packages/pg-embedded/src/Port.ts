/**
 * A free TCP port on 127.0.0.1, asked of the operating system (listen on port 0, read the port, close). The
 * embedded server listens on one unless told otherwise, and the tests and the bench start hosts, proxies and
 * servers of their own on one; this is the only place that picks them. The port is free when asked: another
 * process may take it before it is used, which on a test machine's loopback is rare enough.
 */
import * as Effect from "effect/Effect"
import * as net from "node:net"

/** A free TCP port on 127.0.0.1, for plain async code (vitest's globalSetup, the cluster starter, test helpers). */
export const freeAsync = (): Promise<number> =>
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

/** A free TCP port on 127.0.0.1 (a defect if the operating system refuses to hand one out). */
export const free: Effect.Effect<number> = Effect.promise(freeAsync)
