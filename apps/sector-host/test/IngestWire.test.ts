import { assert, describe, it } from "@effect/vitest"
import * as IngestWire from "../src/IngestWire.ts"

/** Reads server frames back as RFC 6455 §5.2 lays them out: each one's flags, opcode, mask bit and payload. */
const readFrames = (buffer: Buffer) => {
  const read: Array<{ fin: boolean; opcode: number; masked: boolean; text: string }> = []
  let at = 0
  while (at < buffer.length) {
    const fin = (buffer[at]! & 0x80) !== 0
    const opcode = buffer[at]! & 0x0f
    const masked = (buffer[at + 1]! & 0x80) !== 0
    let length = buffer[at + 1]! & 0x7f
    at += 2
    if (length === 126) {
      length = buffer.readUInt16BE(at)
      at += 2
    } else if (length === 127) {
      length = Number(buffer.readBigUInt64BE(at))
      at += 8
    }
    read.push({ fin, opcode, masked, text: buffer.toString("utf8", at, at + length) })
    at += length
  }
  return read
}

describe("IngestWire.frames", () => {
  it("writes each text as one final, unmasked text frame, its length in the form its size in bytes needs", () => {
    const texts = [
      "",
      `{"id":1,"sector":7,"accepted":1,"firstSeq":1,"lastSeq":1}`,
      "é€😀",
      "x".repeat(125),
      "x".repeat(126),
      // 42 characters but 126 bytes: the header grows after the payload is written
      "€".repeat(42),
      "ü".repeat(100),
      "y".repeat(65_535),
      "z".repeat(65_536),
      "a lone surrogate \ud800 is written as U+FFFD, as Buffer.from writes it"
    ]
    const read = readFrames(IngestWire.frames(texts))
    assert.deepStrictEqual(read.map((frame) => frame.text), texts.map((text) => Buffer.from(text).toString()))
    assert.isTrue(read.every((frame) => frame.fin && frame.opcode === 1 && !frame.masked))
  })

  it("writes nothing for no texts", () => {
    assert.strictEqual(IngestWire.frames([]).length, 0)
  })
})

describe("IngestWire.latin1Frames", () => {
  it("writes ASCII texts byte for byte as frames writes them, at every length form", () => {
    const texts = [
      "",
      `{"id":1,"sector":7,"accepted":1,"firstSeq":1,"lastSeq":1}`,
      "x".repeat(125),
      "x".repeat(126),
      "x".repeat(255),
      "x".repeat(256),
      "y".repeat(65_535),
      "z".repeat(65_536),
      "\u0000\u007f ~ all of ASCII"
    ]
    assert.deepStrictEqual(Buffer.from(IngestWire.latin1Frames(texts), "latin1"), IngestWire.frames(texts))
    assert.strictEqual(IngestWire.latin1Frames([]), "")
  })
})
