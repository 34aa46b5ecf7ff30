/**
 * A lean WebSocket client for load generation (`IngestCapacity`): RFC 6455 over a `node:net` socket, text frames
 * only, for a generator that shares its machine with the host it measures and must not be the limit itself. It is a
 * correct client — every frame it sends is masked with a fresh random key, every frame the server sends is read and
 * handed over whole, pings are answered, a close is answered — but it does no more: no extensions, no subprotocols,
 * no fragmented messages (the host sends none), no TLS.
 *
 * A generator lays out its frames before it starts (`encode`: masked, each with a fresh key) and `write`s them a slice
 * at a time, so a tick costs one write whatever it sends. Answers are handed to `onText` as the bytes they came in, in
 * order: a generator that reads a few fields of each answer need not decode it.
 */
import * as crypto from "node:crypto"
import * as net from "node:net"

/** An open connection. */
export interface Connection {
  /** Sends frames made already (a slice of `encode`'s bytes, whole frames), in one write. */
  readonly write: (frames: Uint8Array) => void
  /**
   * Called with each text frame the server sends, in order: its UTF-8 bytes, `bytes[from, to)` (the buffer may be
   * reused once it returns).
   */
  onText: (bytes: Buffer, from: number, to: number) => void
  /** Called once when the connection ends: the server's close code, or 1006 when it broke without one. */
  onClose: (code: number) => void
  /** Starts the closing handshake (1000) and resolves once the socket is closed. */
  readonly close: () => Promise<void>
  /** The socket, for its counters (`bytesWritten`) and to pause reading. */
  readonly socket: net.Socket
}

const opcodes = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** Random bytes for mask keys, refilled when used up: one `randomFillSync` per 16 Ki frames, not one per frame. */
const maskPool = Buffer.alloc(64 * 1024)
let maskAt = maskPool.length
const maskKey = (): Buffer => {
  if (maskAt === maskPool.length) {
    crypto.randomFillSync(maskPool)
    maskAt = 0
  }
  maskAt += 4
  return maskPool.subarray(maskAt - 4, maskAt)
}

/** The size of a masked frame's header for a payload of `length` bytes. */
const headerSize = (length: number) => 2 + (length < 126 ? 0 : length < 65536 ? 2 : 8) + 4

/** Masks `out[from, to)` in place with the 4-byte `key` (RFC 6455 §5.3). */
const mask = (out: Buffer, from: number, to: number, key: Buffer) => {
  for (let i = from, j = 0; i < to; i++, j = (j + 1) & 3) out[i] = out[i]! ^ key[j]!
}

/** Appends one masked frame of `opcode` with `payload` to `out` at `at`; returns where it ends. */
const writeFrame = (out: Buffer, at: number, opcode: number, payload: string | Buffer): number => {
  const length = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length
  out[at] = 0x80 | opcode
  let p = at + 2
  if (length < 126) out[at + 1] = 0x80 | length
  else if (length < 65536) {
    out[at + 1] = 0x80 | 126
    out.writeUInt16BE(length, p)
    p += 2
  } else {
    out[at + 1] = 0x80 | 127
    out.writeBigUInt64BE(BigInt(length), p)
    p += 8
  }
  const key = maskKey()
  key.copy(out, p)
  p += 4
  if (typeof payload === "string") out.write(payload, p, "utf8")
  else payload.copy(out, p)
  mask(out, p, p + length, key)
  return p + length
}

/**
 * `texts` as masked text frames back to back in one buffer, each with a fresh key; `offsets[i]`
 * is where frame `i` starts, `offsets[texts.length]` where the last one ends. A generator that lays out its load before
 * it starts sends `bytes.subarray(offsets[i], offsets[j])` for frames `i` to `j - 1`.
 */
export const encode = (texts: ReadonlyArray<string>): { readonly bytes: Buffer; readonly offsets: Float64Array } => {
  const offsets = new Float64Array(texts.length + 1)
  for (let i = 0; i < texts.length; i++) {
    const length = Buffer.byteLength(texts[i]!)
    offsets[i + 1] = offsets[i]! + headerSize(length) + length
  }
  const bytes = Buffer.allocUnsafe(offsets[texts.length]!)
  for (let i = 0; i < texts.length; i++) writeFrame(bytes, offsets[i]!, opcodes.text, texts[i]!)
  return { bytes, offsets }
}

const frame = (opcode: number, payload: string | Buffer): Buffer => {
  const length = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length
  const out = Buffer.allocUnsafe(headerSize(length) + length)
  writeFrame(out, 0, opcode, payload)
  return out
}

/**
 * Opens a WebSocket to `url` (`ws://host:port/path`), with extra handshake `headers`; resolves once the server
 * answered 101 with the right `Sec-WebSocket-Accept`, fails otherwise.
 */
export const open = (url: string, headers: Readonly<Record<string, string>> = {}): Promise<Connection> =>
  new Promise((resolve, reject) => {
    const target = new URL(url)
    const socket = net.connect({ host: target.hostname, port: Number(target.port), noDelay: true })
    const key = crypto.randomBytes(16).toString("base64")
    const expected = crypto.createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64")
    socket.once("connect", () => {
      socket.write(
        `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n"
      )
    })
    socket.once("error", reject)

    let pending: Buffer = Buffer.alloc(0)
    let upgraded = false
    let closed = false
    let closeCode = 1006
    const connection: Connection = {
      socket,
      onText: () => {},
      onClose: () => {},
      write: (frames) => void socket.write(frames),
      close: () =>
        new Promise((done) => {
          if (socket.destroyed) return done()
          socket.once("close", () => done())
          const code = Buffer.alloc(2)
          code.writeUInt16BE(1000)
          socket.write(frame(opcodes.close, code))
          setTimeout(() => socket.destroy(), 1_000).unref()
        })
    }
    socket.on("close", () => {
      if (closed) return
      closed = true
      connection.onClose(closeCode)
    })

    /** Reads every whole frame in `pending`, leaves the rest. */
    const readFrames = () => {
      let at = 0
      while (pending.length - at >= 2) {
        const opcode = pending[at]! & 0x0f
        if ((pending[at]! & 0x80) === 0) throw new Error("a fragmented frame: not supported by this client")
        if ((pending[at + 1]! & 0x80) !== 0) throw new Error("a masked frame from the server")
        let length = pending[at + 1]! & 0x7f
        let p = at + 2
        if (length === 126) {
          if (pending.length - at < 4) break
          length = pending.readUInt16BE(p)
          p += 2
        } else if (length === 127) {
          if (pending.length - at < 10) break
          length = Number(pending.readBigUInt64BE(p))
          p += 8
        }
        if (pending.length < p + length) break
        if (opcode === opcodes.text) connection.onText(pending, p, p + length)
        else if (opcode === opcodes.ping) socket.write(frame(opcodes.pong, pending.subarray(p, p + length)))
        else if (opcode === opcodes.close) {
          closeCode = length >= 2 ? pending.readUInt16BE(p) : 1005
          if (!socket.destroyed) socket.end(frame(opcodes.close, pending.subarray(p, p + Math.min(length, 2))))
        } else if (opcode !== opcodes.pong) throw new Error(`an unexpected frame (opcode ${opcode})`)
        at = p + length
      }
      pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at)
    }

    socket.on("data", (data: Buffer) => {
      pending = pending.length === 0 ? data : Buffer.concat([pending, data])
      if (!upgraded) {
        const end = pending.indexOf("\r\n\r\n")
        if (end < 0) return
        const head = pending.toString("latin1", 0, end)
        const accept = /\r\nsec-websocket-accept: *([^\r]*)/i.exec(head)?.[1]
        if (!head.startsWith("HTTP/1.1 101") || accept !== expected) {
          socket.destroy()
          return reject(new Error(`no WebSocket upgrade: ${head.split("\r\n")[0]}`))
        }
        upgraded = true
        pending = pending.subarray(end + 4)
        socket.off("error", reject)
        socket.on("error", () => {})
        resolve(connection)
      }
      readFrames()
    })
  })
