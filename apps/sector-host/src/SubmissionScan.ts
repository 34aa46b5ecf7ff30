/**
 * The usual submission read straight from its text, without `JSON.parse` building a body that the field checks then
 * walk and rebuild: an `/ingest` frame (`frame`) and a `POST /sectors/{sector}/ops` body (`body`). At single-op
 * submissions `JSON.parse` alone was about a tenth of the host's CPU per frame. It reads only JSON as a client's
 * `JSON.stringify` writes it, and only a submission that is plainly valid; for anything else — whitespace, an escape
 * in a string, a duplicate or unknown key, a number not in its shortest form, an idempotency key in a frame, an op
 * the field checks would not take, data that could be near a limit — it gives up (`undefined`) and the submission is
 * read the full way (`JSON.parse`, the limits, the field checks: `Ingest.parseFrame`, `Request.parseSubmission`),
 * which has the last word and says what is wrong. What it takes, the full way takes the same (property tests hold it
 * to that).
 *
 * It also measures each `set` op's `data` as `Batch.cellBytes` does — the length of its `JSON.stringify` — from the
 * text it was read from, which is that text (no whitespace, no escapes, no duplicate keys, numbers as `String` writes
 * them), and hands those lengths on with the submission (`dataLengths`, for `SectorHost.trySubmit`), so the sector
 * does not stringify it again.
 */
import type { Batch, Op } from "@sectors/core"

/** A frame the scan took, as `Ingest` reads a submission. */
export interface ScannedFrame {
  readonly _tag: "Submission"
  readonly id: string | number
  readonly sector: number
  readonly ops: ReadonlyArray<Op.Op>
  readonly ack: "accepted" | "durable"
  readonly key: undefined
  /** Each op's `JSON.stringify(data)` length, for a `set` (what `Batch.cellBytes` would measure). */
  readonly dataLengths: Batch.DataLengths
}

/** Most levels of arrays and objects inside an op's `data`, far under `Request.maxJsonDepth` with the frame's own. */
const maxDataDepth = 16

const quote = 0x22
const backslash = 0x5c
const comma = 0x2c
const colon = 0x3a
const openBrace = 0x7b
const closeBrace = 0x7d
const openBracket = 0x5b
const closeBracket = 0x5d
const minus = 0x2d
const zero = 0x30
const nine = 0x39

/** A word of 1 to 10 lowercase letters as a number, one base-32 digit a letter: exact, and one number per word. */
const wordCode = (word: string): number => {
  let code = 0
  for (let i = 0; i < word.length; i++) code = code * 32 + word.charCodeAt(i) - 96
  return code
}

/** The keys and named values the scan takes, by `wordCode`. */
const words = {
  id: wordCode("id"),
  sector: wordCode("sector"),
  ops: wordCode("ops"),
  ack: wordCode("ack"),
  accepted: wordCode("accepted"),
  durable: wordCode("durable"),
  type: wordCode("type"),
  entity: wordCode("entity"),
  component: wordCode("component"),
  worker: wordCode("worker"),
  data: wordCode("data"),
  set: wordCode("set"),
  remove: wordCode("remove"),
  delete: wordCode("delete"),
  authority: wordCode("authority")
} as const

/** `Scan.dataLengths` before any op is read (shared: nothing writes to it). */
const noLengths: Batch.DataLengths = []

/** Thrown to give up: caught once, in `attempt`. */
const giveUp: unique symbol = Symbol("giveUp")

/**
 * A scan over one text: `at` moves forward; every `expect…` gives up (throws `giveUp`) on anything it does not take.
 */
class Scan {
  at = 0
  /** What `JSON.stringify` adds to or takes from the length of the number texts read so far (none canonical). */
  numberGrowth = 0
  /** Whether an op with `data` was read (its strings must be well-formed Unicode: checked once, at the end). */
  data = false

  readonly text: string

  constructor(text: string) {
    this.text = text
  }

  fail(): never {
    throw giveUp
  }

  expect(code: number): void {
    if (this.text.charCodeAt(this.at) !== code) this.fail()
    this.at++
  }

  /** Whether `literal` comes next; if it does, it is read. */
  is(literal: string): boolean {
    // code by code: `startsWith` at a position was most of the scan's time
    const text = this.text
    const at = this.at
    for (let i = 0; i < literal.length; i++) if (text.charCodeAt(at + i) !== literal.charCodeAt(i)) return false
    this.at = at + literal.length
    return true
  }

  /**
   * A string of 1 to 10 lowercase letters — every key and every named value the scan takes is one — as its `wordCode`
   * (comparing numbers is much cheaper than comparing strings here).
   */
  word(): number {
    const text = this.text
    let at = this.at
    if (text.charCodeAt(at++) !== quote) this.fail()
    let code = 0
    const end = at + 11
    for (;;) {
      const letter = text.charCodeAt(at++) - 96
      if (letter >= 1 && letter <= 26 && at < end) code = code * 32 + letter
      else if (letter === quote - 96 && at > this.at + 2) break
      else this.fail()
    }
    this.at = at
    return code
  }

  /** A key that is a `word`, with its colon. */
  keyWord(): number {
    const code = this.word()
    this.expect(colon)
    return code
  }

  /** `,` (true) or `close` (false) — whatever follows a member. */
  next(close: number): boolean {
    const code = this.text.charCodeAt(this.at++)
    if (code === comma) return true
    if (code !== close) this.fail()
    return false
  }

  /** A string without an escape or a control character; its contents. */
  string(): string {
    const text = this.text
    this.expect(quote)
    const start = this.at
    let at = start
    for (;;) {
      const code = text.charCodeAt(at)
      if (code === quote) break
      // NaN (the end of the text) fails here too
      if (!(code >= 0x20) || code === backslash) this.fail()
      at++
    }
    this.at = at + 1
    return text.slice(start, at)
  }

  /** A member's key, `"key":`, as its contents. */
  key(): string {
    const key = this.string()
    this.expect(colon)
    return key
  }

  /** An integer written as `JSON.stringify` writes it, a safe one of at most 15 digits, not `-0`. */
  integer(): number {
    const text = this.text
    const start = this.at
    if (text.charCodeAt(this.at) === minus) this.at++
    const first = this.at
    const value = this.digits()
    const digits = this.at - first
    if (digits === 0 || digits > 15 || (digits > 1 && text.charCodeAt(first) === zero)) this.fail()
    if (start === first) return value
    if (value === 0) this.fail() // -0
    return -value
  }

  /** The decimal digits from here on, as a number (exact for up to 15 of them); moves past them. */
  private digits(): number {
    const text = this.text
    let value = 0
    for (;;) {
      const code = text.charCodeAt(this.at)
      if (!(code >= zero && code <= nine)) return value
      value = value * 10 + (code - zero)
      this.at++
    }
  }

  /** A non-negative `integer`. */
  natural(): number {
    if (this.text.charCodeAt(this.at) === minus) this.fail()
    return this.integer()
  }

  /** Any JSON number (finite), noting how much longer or shorter `JSON.stringify` writes it. */
  number(): number {
    const text = this.text
    const start = this.at
    const negative = text.charCodeAt(this.at) === minus
    if (negative) this.at++
    const first = this.at
    const value = this.digits()
    const digits = this.at - first
    if (digits === 0 || (digits > 1 && text.charCodeAt(first) === zero)) this.fail()
    const after = text.charCodeAt(this.at)
    if (digits <= 15 && after !== 0x2e && after !== 0x65 && after !== 0x45) {
      // an integer as `JSON.stringify` writes it (exact: at most 15 digits)
      if (negative && value === 0) this.fail() // -0
      return negative ? -value : value
    }
    if (after === 0x2e) { // .
      this.at++
      const from = this.at
      while (isDigit(text.charCodeAt(this.at))) this.at++
      if (this.at === from) this.fail()
    }
    const exponent = text.charCodeAt(this.at)
    if (exponent === 0x65 || exponent === 0x45) { // e E
      this.at++
      const sign = text.charCodeAt(this.at)
      if (sign === 0x2b || sign === minus) this.at++
      const from = this.at
      while (isDigit(text.charCodeAt(this.at))) this.at++
      if (this.at === from) this.fail()
    }
    const written = text.slice(start, this.at)
    const parsed = Number(written)
    if (!Number.isFinite(parsed) || Object.is(parsed, -0)) this.fail()
    this.numberGrowth += String(parsed).length - written.length
    return parsed
  }

  /** Any JSON value inside an op's `data`, at `depth` levels of arrays and objects. */
  value(depth: number): unknown {
    const code = this.text.charCodeAt(this.at)
    if (code === quote) return own(this.string())
    if (code === openBrace) return this.object(depth + 1)
    if (code === openBracket) return this.array(depth + 1)
    if (code === minus || isDigit(code)) return this.number()
    if (this.is("true")) return true
    if (this.is("false")) return false
    if (this.is("null")) return null
    return this.fail()
  }

  /** A JSON object without a duplicate key and without `__proto__`, as `JSON.parse` builds it. */
  object(depth: number): Record<string, unknown> {
    if (depth > maxDataDepth) this.fail()
    this.expect(openBrace)
    const object: Record<string, unknown> = {}
    if (this.text.charCodeAt(this.at) === closeBrace) {
      this.at++
      return object
    }
    do {
      const key = this.key()
      // a duplicate (or an inherited name such as `constructor`: given up too, harmlessly)
      if (object[key] !== undefined || key === "__proto__") this.fail()
      object[key] = this.value(depth)
    } while (this.next(closeBrace))
    return object
  }

  array(depth: number): Array<unknown> {
    if (depth > maxDataDepth) this.fail()
    this.expect(openBracket)
    const array: Array<unknown> = []
    if (this.text.charCodeAt(this.at) === closeBracket) {
      this.at++
      return array
    }
    do array.push(this.value(depth))
    while (this.next(closeBracket))
    return array
  }

  /** A component name (`[A-Za-z0-9_.-]{1,64}`) as a string. */
  component(): string {
    const text = this.text
    this.expect(quote)
    const start = this.at
    while (isNameCode(text.charCodeAt(this.at))) this.at++
    const length = this.at - start
    if (length === 0 || length > 64) this.fail()
    this.expect(quote)
    return own(text.slice(start, start + length))
  }

  /** A worker id (`[\x21-\x7e]{1,128}`, without `"` and `\`, which JSON escapes) or `null`. */
  worker(): string | null {
    const text = this.text
    if (this.is("null")) return null
    this.expect(quote)
    const start = this.at
    for (;;) {
      const code = text.charCodeAt(this.at)
      if (!(code >= 0x21 && code <= 0x7e) || code === quote || code === backslash) break
      this.at++
    }
    const length = this.at - start
    if (length === 0 || length > 128) this.fail()
    this.expect(quote)
    return own(text.slice(start, start + length))
  }

  /** The data length of the op read last (`op`): its `set`'s, `undefined` for an op without data. */
  private lastLength: number | undefined = undefined
  /** Each op's data length, in the order of the ops (`ops` makes it beside them; none before). */
  dataLengths: Batch.DataLengths = noLengths

  /** One op, as `Request.plainOps` builds it; its data length goes to `lastLength` (`undefined` but for a `set`). */
  op(maxDataBytes: number): Op.Op {
    this.expect(openBrace)
    let type: Op.Op["type"] | undefined
    let entity: number | undefined
    let component: string | undefined
    let worker: string | null | undefined
    let data: Record<string, unknown> | undefined
    let dataLength = 0
    let fields = 0
    do {
      fields++
      switch (this.keyWord()) {
        case words.type: {
          if (type !== undefined) this.fail()
          const code = this.word()
          type = code === words.set
            ? "set"
            : code === words.remove
            ? "remove"
            : code === words.delete
            ? "delete"
            : code === words.authority
            ? "authority"
            : this.fail()
          break
        }
        case words.entity:
          if (entity !== undefined) this.fail()
          entity = this.natural()
          break
        case words.component:
          if (component !== undefined) this.fail()
          component = this.component()
          break
        case words.worker:
          if (worker !== undefined) this.fail()
          worker = this.worker()
          break
        case words.data: {
          if (data !== undefined) this.fail()
          const start = this.at
          const growth = this.numberGrowth
          data = this.object(1)
          dataLength = this.at - start + this.numberGrowth - growth
          break
        }
        default:
          this.fail()
      }
    } while (this.next(closeBrace))
    if (entity === undefined) return this.fail()
    switch (type) {
      case "set":
        if (fields !== 4 || component === undefined || data === undefined) return this.fail()
        // the bound `Request.limitIssues` checks (UTF-8 bytes): near it, the full read measures exactly
        if (3 * dataLength > maxDataBytes) return this.fail()
        this.data = true
        this.lastLength = dataLength
        return { type: "set", entity, component, data: data as Op.Data }
      case "remove":
        this.lastLength = undefined
        return fields === 3 && component !== undefined
          ? { type: "remove", entity, component }
          : this.fail()
      case "delete":
        this.lastLength = undefined
        return fields === 2 ? { type: "delete", entity } : this.fail()
      case "authority":
        this.lastLength = undefined
        return fields === 4 && component !== undefined && worker !== undefined
          ? { type: "authority", entity, component, worker }
          : this.fail()
      default:
        return this.fail()
    }
  }

  /**
   * The ops, and their data lengths beside them (`dataLengths`): a single op's in arrays of one (an array pushed to
   * from empty takes room for 16).
   */
  ops(maxOps: number, maxDataBytes: number): Array<Op.Op> {
    this.expect(openBracket)
    if (maxOps < 1) this.fail()
    const ops: Array<Op.Op> = [this.op(maxDataBytes)]
    const lengths: Array<number | undefined> = [this.lastLength]
    while (this.next(closeBracket)) {
      if (ops.length === maxOps) this.fail()
      ops.push(this.op(maxDataBytes))
      lengths.push(this.lastLength)
    }
    this.dataLengths = lengths
    return ops
  }
}

const isDigit = (code: number) => code >= zero && code <= nine

/**
 * `slice` as a string of its own, for a string the sector keeps (a component, a worker, a string in data). V8 makes a
 * slice of 13 characters or more a view into the text it was cut from, which would keep the whole frame or body alive
 * for as long as the sector holds the value, unseen by the buffer budget (which counts what the ops hold); `" " +
 * slice`, sliced again, is a copy (V8 flattens the pair into a new string first): about 80 ns, only for those slices.
 * Keys and ids are not kept (a key becomes a property name, which V8 copies into its string table).
 */
const own = (slice: string): string => slice.length < 13 ? slice : (" " + slice).slice(1)

/** `[A-Za-z0-9_.-]` */
const isNameCode = (code: number) =>
  (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a) || (code >= zero && code <= nine) ||
  code === 0x5f || code === 0x2e || code === minus

/** A `POST` body the scan took: its ops, and each `set` op's `JSON.stringify(data)` length (see `ScannedFrame`). */
export interface ScannedBody {
  readonly ops: ReadonlyArray<Op.Op>
  readonly dataLengths: Batch.DataLengths
}

/** What the scan holds to for every submission: its limits (the ones `Request.limitIssues` checks). */
export interface Limits {
  readonly maxOpsPerRequest: number
  readonly maxDataBytes: number
}

/**
 * `read` over the whole of `text`: its result when it reads all of it and gives up nowhere, `undefined` otherwise.
 * Strings in an op's data must be well-formed Unicode (`Request`'s `storable`): text decoded from UTF-8 has no lone
 * surrogate, and an escaped one makes the scan give up, so this only checks text that came some other way.
 */
const attempt = <A>(text: string, read: (scan: Scan) => A | undefined): A | undefined => {
  const scan = new Scan(text)
  try {
    const result = read(scan)
    if (result === undefined || scan.at !== text.length) return undefined
    if (scan.data && !text.isWellFormed()) return undefined
    return result
  } catch (error) {
    if (error === giveUp) return undefined
    throw error
  }
}

/**
 * The frame `text` when it is a plainly valid frame written as `JSON.stringify` writes it (see the opening), read as
 * the full read (`Ingest.parseFrame`) reads it; `undefined` for anything else.
 */
export const frame = (text: string, limits: Limits): ScannedFrame | undefined =>
  attempt(text, (scan) => {
    let id: string | number | undefined
    let sector: number | undefined
    let ops: Array<Op.Op> | undefined
    let ack: "accepted" | "durable" | undefined
    scan.expect(openBrace)
    do {
      switch (scan.keyWord()) {
        case words.id:
          if (id !== undefined) return undefined
          id = text.charCodeAt(scan.at) === quote ? scan.string() : scan.integer()
          break
        case words.sector:
          if (sector !== undefined) return undefined
          sector = scan.natural()
          break
        case words.ops:
          if (ops !== undefined) return undefined
          ops = scan.ops(limits.maxOpsPerRequest, limits.maxDataBytes)
          break
        case words.ack: {
          if (ack !== undefined) return undefined
          const code = scan.word()
          ack = code === words.accepted ? "accepted" : code === words.durable ? "durable" : undefined
          if (ack === undefined) return undefined
          break
        }
        default:
          return undefined
      }
    } while (scan.next(closeBrace))
    if (id === undefined || sector === undefined || ops === undefined) return undefined
    return { _tag: "Submission", id, sector, ops, ack: ack ?? "accepted", key: undefined, dataLengths: scan.dataLengths }
  })

/**
 * The `POST` body `text` when it is a plainly valid `{"ops":[...]}` written as `JSON.stringify` writes it, its ops
 * read as the full read (`Request.parseSubmission`) reads them; `undefined` for anything else.
 */
export const body = (text: string, limits: Limits): ScannedBody | undefined =>
  attempt(text, (scan) => {
    scan.expect(openBrace)
    if (scan.keyWord() !== words.ops) return undefined
    const ops = scan.ops(limits.maxOpsPerRequest, limits.maxDataBytes)
    scan.expect(closeBrace)
    return { ops, dataLengths: scan.dataLengths }
  })
