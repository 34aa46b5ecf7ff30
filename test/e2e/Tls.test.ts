/**
 * HTTPS on the real process: with `TLS_CERT` and `TLS_KEY` naming a self-signed certificate made for the test, the
 * host serves its API over TLS on its port (a client trusting that certificate gets 200 from `/healthz`, and its
 * `/ingest` frames answered over `wss:`) and plain HTTP to the same port fails. Half of the pair is a configuration error: exit 2 and one line, before any database.
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as crypto from "node:crypto"
import * as https from "node:https"
import * as os from "node:os"
import * as path from "node:path"
import * as tls from "node:tls"
import { runToExit, scopedExactly } from "../support/HostProcess.ts"

/** The `openssl` command makes the test certificate (the README lists it among what the tests need). */
const openssl = "openssl"

/** A self-signed certificate for 127.0.0.1 and localhost, valid a day, in a directory removed with the scope. */
const selfSigned = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "sector-host-tls-"))
    const cert = path.join(dir, "c.pem")
    const key = path.join(dir, "k.pem")
    await new Promise<void>((resolve, reject) =>
      execFile(openssl, [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert
      ], (error) => error ? reject(error) : resolve())
    )
    return { dir, cert, key }
  }),
  ({ dir }) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

/** `GET path` over HTTPS to 127.0.0.1, trusting `ca` only: status and body. */
const httpsGet = (port: number, pathname: string, ca: Buffer) =>
  Effect.promise(() =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = https.request({ host: "127.0.0.1", port, path: pathname, ca, agent: false }, (response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (chunk) => (body += chunk))
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }))
      })
      request.on("error", reject)
      request.end()
    })
  )

/**
 * One `/ingest` frame over `wss:` to 127.0.0.1, trusting `ca` only: the upgrade, one masked text frame, and the text
 * of the first frame the host answers with (a client written out here: Node's WebSocket takes no CA of its own).
 */
const wssFrame = (port: number, frame: string, ca: Buffer) =>
  Effect.promise(() =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
        const key = crypto.randomBytes(16).toString("base64")
        socket.write(
          `GET /ingest HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
        )
      })
      let received = Buffer.alloc(0)
      let upgraded = false
      socket.on("error", reject)
      socket.on("data", (data: Buffer) => {
        received = Buffer.concat([received, data])
        if (!upgraded) {
          const end = received.indexOf("\r\n\r\n")
          if (end < 0) return
          const status = received.toString("latin1", 0, received.indexOf("\r\n"))
          if (!status.startsWith("HTTP/1.1 101")) return reject(new Error(`no upgrade: ${status}`))
          upgraded = true
          received = received.subarray(end + 4)
          const payload = Buffer.from(frame)
          const mask = crypto.randomBytes(4)
          const masked = payload.map((byte, i) => byte ^ mask[i % 4]!)
          socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]))
        }
        // an answer under 126 bytes: FIN and text, then its length
        if (received.length >= 2 && received.length >= 2 + (received[1]! & 0x7f)) {
          resolve(received.toString("utf8", 2, 2 + (received[1]! & 0x7f)))
          socket.destroy()
        }
      })
    })
  )

describe("sector-host over TLS", () => {
  it.live("serves HTTPS on its port with TLS_CERT and TLS_KEY, and plain HTTP to that port fails", () =>
    Effect.gen(function*() {
      const tls = yield* selfSigned
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      const host = yield* scopedExactly({
        DATABASE_URL: Redacted.value(url),
        PORT: String(port),
        TLS_CERT: tls.cert,
        TLS_KEY: tls.key,
        LOG_FORMAT: "json"
      })
      assert.strictEqual(host.baseUrl, `https://127.0.0.1:${port}`)
      const ca = yield* Effect.promise(() => fs.readFile(tls.cert))
      const health = yield* httpsGet(port, "/healthz", ca)
      assert.deepStrictEqual([health.status, JSON.parse(health.body)], [200, { status: "ok" }])
      assert.strictEqual((yield* httpsGet(port, "/readyz", ca)).status, 200)
      const answer = yield* wssFrame(port, `{"id":1,"sector":3,"ops":[{"type":"delete","entity":1}]}`, ca)
      assert.deepStrictEqual(JSON.parse(answer), { id: 1, sector: 3, accepted: 1, firstSeq: 1, lastSeq: 1 })

      const plain = yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) }).then(
          (response) => `answered ${response.status}`,
          (error: Error) => `failed: ${String(error.cause ?? error)}`
        )
      )
      assert.match(plain, /^failed: /)
      host.signal("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => host.exited)).code, 0, host.output())
    }).pipe(Effect.scoped), { timeout: 90_000 })

  it.live.each([["TLS_CERT", "TLS_KEY"], ["TLS_KEY", "TLS_CERT"]] as const)(
    "refuses to start with %s but not %s: exit 2 and one line",
    ([given, missing]) =>
      Effect.gen(function*() {
        const tls = yield* selfSigned
        const port = yield* Port.free
        const { code, output } = yield* Effect.promise(() =>
          runToExit({
            PORT: String(port),
            DATA_DIR: "/nonexistent/never-created",
            LOG_FORMAT: "json",
            [given]: given === "TLS_CERT" ? tls.cert : tls.key
          })
        )
        assert.strictEqual(code, 2, output)
        const lines = output.trim().split("\n")
        assert.strictEqual(lines.length, 1, output)
        assert.include(lines[0], `${given} is set without ${missing}`)
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
