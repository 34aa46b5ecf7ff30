/**
 * The wire of an `/ingest` connection (`Ingest`): its frames read straight from the `ws` WebSocket that Node's server
 * upgraded the request to, and its answers written to the TCP socket as WebSocket frames, every answer of one turn of
 * the event loop in one write.
 *
 * This goes around effect's `Socket` on purpose, for speed, and only here. Effect's reader hands each message to the
 * pulling fiber (a resumption, an async-context capture, an effect run per frame) and measures it with a
 * `TextEncoder` for its high-water mark; its writer sends each answer as two writes of `ws`. At single-op frames that
 * was about a third of the host's CPU per frame. The connection is still upgraded and closed by effect (the request's
 * `upgrade`, the reader's scope: it closes the WebSocket when the connection's scope ends), and effect's reader keeps
 * its `error` and `close` listeners: a pull on it fails when the connection is closed. Only its `message` listener is
 * taken off, and the frames go to `onText` instead.
 *
 * **Gotchas** `ws` delivers every frame of a chunk it has read even after `pause()` (it only stops the socket): the
 * caller holds those (see `Ingest`). Answers are written after the turn's JavaScript, so `close` writes what is
 * waiting first: a close frame is never ahead of an answer. Nothing is written once the WebSocket is not open (as
 * `ws.send` drops a message then).
 */
import type * as Net from "node:net"

/** What of a `ws` WebSocket the wire uses. */
interface WebSocketLike {
  readonly readyState: number
  readonly on: (event: "message", listener: (data: Buffer | ArrayBuffer | Array<Buffer>, isBinary: boolean) => void) => void
  readonly removeAllListeners: (event: "message") => void
  readonly pause: () => void
  readonly resume: () => void
  readonly close: (code: number, reason: string) => void
}

/** `ws` keeps its WebSocket on the upgraded socket under a symbol of its own (`kWebSocket`, "websocket"). */
const webSocketOf = (socket: Net.Socket): WebSocketLike | undefined => {
  const key = Object.getOwnPropertySymbols(socket).find((symbol) => symbol.description === "websocket")
  const candidate: unknown = key === undefined ? undefined : (socket as unknown as Record<symbol, unknown>)[key]
  return typeof candidate === "object" && candidate !== null && "readyState" in candidate && "pause" in candidate &&
      "removeAllListeners" in candidate
    ? candidate as WebSocketLike
    : undefined
}

const open = 1

/** An `/ingest` connection's wire (`make`). */
export interface Wire {
  /**
   * Queues `text` as one text frame; the turn's frames go out in one write once its JavaScript is done. `ascii`: the
   * caller knows `text` is ASCII, so it can go out as it is (`latin1Frames`), without being measured and copied.
   */
  readonly send: (text: string, ascii?: boolean) => void
  /** Writes the queued answers, then starts the closing handshake with `code`. */
  readonly close: (code: number, reason: string) => void
  /** Stops reading the socket (frames of a chunk already read still arrive) / reads it again. */
  readonly pause: () => void
  readonly resume: () => void
}

/** What the wire tells its connection. */
export interface Handlers {
  /** A text frame, decoded (`ws` checked its UTF-8: 1007 otherwise). */
  readonly onText: (text: string) => void
  /** A binary frame. */
  readonly onBinary: () => void
  /** `onText` or `onBinary` threw: a bug, kept from the socket's event (where it would end the process). */
  readonly onDefect: (defect: unknown) => void
}

/**
 * Takes the frames of the WebSocket on `socket` (upgraded by Node's server; effect's reader acquired, see the opening)
 * for `handlers`. `undefined` when `socket` carries no `ws` WebSocket.
 */
export const make = (socket: Net.Socket, handlers: Handlers): Wire | undefined => {
  const ws = webSocketOf(socket)
  if (ws === undefined) return undefined
  ws.removeAllListeners("message")
  ws.on("message", (data, isBinary) => {
    try {
      if (isBinary) handlers.onBinary()
      else handlers.onText(data.toString())
    } catch (defect) {
      handlers.onDefect(defect)
    }
  })

  // the answers of this turn, written once its JavaScript is done (`process.nextTick`)
  let queued: Array<string> = []
  /** Whether every queued text is ASCII. */
  let ascii = true
  const flush = () => {
    const texts = queued
    const latin1 = ascii
    queued = []
    ascii = true
    if (texts.length === 0 || ws.readyState !== open) return
    if (latin1) socket.write(latin1Frames(texts), "latin1")
    else socket.write(frames(texts))
  }
  return {
    send: (text, isAscii = false) => {
      if (queued.length === 0) process.nextTick(flush)
      queued.push(text)
      if (!isAscii) ascii = false
    },
    close: (code, reason) => {
      flush()
      ws.close(code, reason)
    },
    pause: () => ws.pause(),
    resume: () => ws.resume()
  }
}

/** The headers of text frames of under 126 bytes, made once (most answers are). */
const shortHeaders = Array.from({ length: 126 }, (_, length) => String.fromCharCode(0x81, length))

/** A text frame's header (FIN, text, unmasked) for a payload of `length` bytes: one latin1 character a byte. */
const header = (length: number): string =>
  length < 126
    ? shortHeaders[length]!
    : length < 65536
    ? String.fromCharCode(0x81, 126, length >>> 8, length & 0xff)
    : String.fromCharCode(
      0x81,
      127,
      0,
      0,
      (length / 2 ** 40) & 0xff,
      (length / 2 ** 32) & 0xff,
      (length >>> 24) & 0xff,
      (length >>> 16) & 0xff,
      (length >>> 8) & 0xff,
      length & 0xff
    )

/**
 * ASCII `texts` as `frames` writes them, as a string of latin1 characters, one a byte: each header, then the text as
 * it is (ASCII is its own UTF-8). A third of `frames`'s cost for the usual answers: no measuring, no native call per
 * text, one buffer made when the string is written.
 */
export const latin1Frames = (texts: ReadonlyArray<string>): string => {
  let out = ""
  for (let i = 0; i < texts.length; i++) out += header(texts[i]!.length) + texts[i]!
  return out
}

/** `texts` as unmasked, unfragmented text frames (RFC 6455 §5.2: a server does not mask), in one buffer. */
export const frames = (texts: ReadonlyArray<string>): Buffer => {
  const heads = new Array<string>(texts.length)
  let size = 0
  for (let i = 0; i < texts.length; i++) {
    const length = Buffer.byteLength(texts[i]!)
    heads[i] = header(length)
    size += heads[i]!.length + length
  }
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (let i = 0; i < texts.length; i++) {
    at += out.write(heads[i]!, at, "latin1")
    at += out.write(texts[i]!, at)
  }
  return out
}
