/**
 * The yardsticks of the `lean` suite, run as a process of their own like the host (`HostProcess` starts them): a
 * server that answers `POST /sectors/{id}/ops` by reading the body, parsing its JSON and answering 202 with a body the
 * size of the host's answer — and nothing else (no validation, no sector, no database). `bare` is `node:http` alone;
 * `router` is the same route on effect's `HttpRouter` and `NodeHttpServer`, the stack the host is built on. Both say
 * `listening on` once they listen on `PORT` and exit 0 on SIGTERM.
 *
 * `node src/BaselineServer.ts bare|router`
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import * as http from "node:http"

const kind = process.argv[2]
const port = Number(process.env.PORT ?? "0")

/** The answer the host gives a single-op submission, in shape and size. */
const answer = (sector: string, ops: unknown) =>
  JSON.stringify({ sector: Number(sector), accepted: Array.isArray(ops) ? ops.length : 0, firstSeq: 1, lastSeq: 1 })

if (kind === "bare") {
  const server = http.createServer((request, response) => {
    const match = /^\/sectors\/(\d+)\/ops/.exec(request.url ?? "")
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      if (request.method !== "POST" || match === null) {
        response.writeHead(404).end()
        return
      }
      let body: { ops?: unknown }
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
      } catch {
        response.writeHead(400).end()
        return
      }
      const text = answer(match[1]!, body.ops)
      response.writeHead(202, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
      response.end(text)
    })
  })
  server.listen(port, "127.0.0.1", () => console.log(`bare node:http listening on ${port}`))
  process.on("SIGTERM", () => server.close(() => process.exit(0)))
} else if (kind === "router") {
  const route = HttpRouter.add(
    "POST",
    "/sectors/:id/ops",
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const { id } = yield* HttpRouter.params
      const body = (yield* request.json) as { ops?: unknown }
      return HttpServerResponse.text(answer(id ?? "0", body.ops), { status: 202, contentType: "application/json" })
    }).pipe(Effect.orDie)
  )
  const main = HttpRouter.serve(route, { disableListenLog: true, disableLogger: true }).pipe(
    Layer.provide(NodeHttpServer.layer(() => http.createServer(), { host: "127.0.0.1", port })),
    Layer.tap(() => Effect.sync(() => console.log(`effect HttpRouter listening on ${port}`)))
  )
  NodeRuntime.runMain(Layer.launch(main), { disableErrorReporting: true })
  // SIGTERM interrupts the main fiber (runMain); the server closes with its scope: that is a clean exit here
  process.on("exit", () => {
    process.exitCode = 0
  })
} else {
  console.error("usage: BaselineServer.ts bare|router")
  process.exit(2)
}
