/**
 * Bad input: thousands of generated malformed requests against the real host process — wrong methods, unknown
 * routes, bad ids, bad `ack`, bodies that are not UTF-8 or not JSON, truncated JSON, JSON of the wrong shape, ops
 * with every kind of wrong field mixed with valid ones, too many ops, too much data, too big a body, too deep a
 * nesting, POST bodies not declared as JSON (415), requests Node's HTTP parser refuses — sent 16 at a time. A second
 * run starts the host with `AUTH_TOKEN` and sends otherwise valid requests with every kind of wrong `Authorization`
 * (missing, another scheme, a wrong or nearly right token, malformed, oversized): 401, or 431 past the header limit.
 *
 * What must hold: every answer is the 4xx the API defines for it, as `application/problem+json` with `type`,
 * `title`, `status` (the HTTP status) and `detail`, and `errors` for 400 and 413; not one 5xx, no request left
 * without an answer; the server's memory stays flat; and nothing changes — the seeded sectors read the same through
 * the API and in the database, and no sector that only ever got malformed requests comes into existence.
 *
 * Every request is malformed by construction (each generator says which defect it plants and what status that
 * earns): a 2xx here means the API accepted something it must refuse.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Op } from "@sectors/core"
import { Arbitraries } from "@sectors/core/testing"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as fc from "fast-check"
import * as net from "node:net"
import { call, type Host, scoped } from "../support/HostProcess.ts"
import { mb, metric, rss, scrape } from "../support/Observe.ts"
import { pick } from "../support/Soak.ts"
import * as Verify from "../support/Verify.ts"

/** The host's limits, set explicitly (smaller than the defaults, so over-limit requests stay cheap to send). */
const limits = { maxBodyBytes: 262_144, maxOpsPerRequest: 200, maxDataBytes: 8_192 } as const
/** `Http.maxJsonDepth`: deeper bodies get 413. The generators nest at least this much more, clear of off-by-ones. */
const maxJsonDepth = 64
const tooDeep = maxJsonDepth + 16

const requests = pick(3_000, 30_000)
const warmUp = pick(400, 2_000)
const concurrency = 16
const seed = 7_2026

/**
 * How much the host's memory may grow between the warm-up and the end, both read right after a full collection. The
 * warm-up has sent every kind of request (bodies up to `maxBodyBytes`, 16 at a time), so the process has reached its
 * working size. The heap in use is what a leak shows in: it stayed within ±1 MB over 100 000 of these requests, so
 * 4 MB catches a leak of 1.4 KB per request in CI (a small body, or the error record of one) and of 140 bytes in the
 * soak. RSS also counts memory V8 and the allocator keep without using (it moved by 3 MB over those 100 000 after a
 * collection, but by 80 MB without one); 64 MB bounds that, and any leak of the bodies themselves.
 */
const heapGrowthBound = 4 * 1024 * 1024
const rssGrowthBound = 64 * 1024 * 1024

/** Sectors given valid ops before the fuzzing; malformed requests target them too (nothing may be half-applied). */
const seeded = [1, 2, 3] as const
/** Sectors that only ever get malformed requests: they must never come into existence. */
const untouched = Array.from({ length: 12 }, (_, i) => 100 + i)
const seededEntities = 12

// ---- the requests ----

/** A malformed request and the statuses the API defines for it. */
interface Malformed {
  readonly kind: string
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | Uint8Array | { readonly stream: number } | undefined
  readonly expect: ReadonlyArray<number>
}

/** A request written straight to a socket: HTTP the parser refuses before any route sees it. */
interface Raw {
  readonly kind: string
  readonly raw: string
  readonly expect: ReadonlyArray<number>
}

type Request = Malformed | Raw

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const notDotSegment = (segment: string) => ![".", ".."].includes(segment)

/** Any text (whole code points, so that it percent-encodes), as one path segment. */
const segmentText = fc.string({ unit: "binary", minLength: 1, maxLength: 12 })

const validSectorId = fc.constantFrom(...seeded, ...untouched).map(String)
const validEntityId = fc.nat({ max: seededEntities * 2 }).map(String)

/** Path ids the API must refuse: not a non-negative safe integer written in 1 to 16 decimal digits. */
const badId: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: -1_000_000_000, max: -1 }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x)).map(String),
  fc.bigInt({ min: 2n ** 53n, max: 10n ** 30n }).map(String),
  fc.constantFrom(
    "abc", "NaN", "Infinity", "-0", "+1", "1e3", "0x10", "0b1", "1_000", " 1", "1 ", "١٢", "１", "9007199254740992",
    "12345678901234567", "1.0", "null", "%", "\u0000", "💩", "1/2"
  ),
  segmentText.filter((s) => !/^\d+$/.test(s))
).map(encodeURIComponent).filter(notDotSegment)

/** Routes of the API: path (given a sector and an entity segment) and the methods it has. */
interface Route {
  readonly path: (sector: string, entity: string) => string
  readonly methods: ReadonlyArray<string>
}

const routes: ReadonlyArray<Route> = [
  { path: (s) => `/sectors/${s}/ops`, methods: ["POST"] },
  { path: (s, e) => `/sectors/${s}/entities/${e}`, methods: ["GET"] },
  { path: (s) => `/sectors/${s}`, methods: ["GET"] },
  { path: () => "/sectors", methods: ["GET"] },
  { path: (s) => `/sectors/${s}/flush`, methods: ["POST"] },
  { path: (s) => `/sectors/${s}/dead-letters`, methods: ["GET"] },
  { path: () => "/healthz", methods: ["GET"] },
  { path: () => "/readyz", methods: ["GET"] },
  { path: () => "/metrics", methods: ["GET"] }
]

/** Any garbage as a body (for requests refused before their body matters). */
const anyBody = fc.option(fc.string({ unit: "binary", maxLength: 200 }), { nil: undefined })

/** A known path with a method it does not have: 405 with `Allow`, whatever the ids and the body. */
const wrongMethod: fc.Arbitrary<Malformed> = fc.constantFrom(...routes).chain((route) => {
  // HEAD is GET without a body: only a path without GET refuses it
  const others = ["GET", "POST", "PUT", "PATCH", "DELETE", "QUERY", "HEAD"].filter((m) =>
    !route.methods.includes(m) && !(m === "HEAD" && route.methods.includes("GET"))
  )
  return fc.record({
    method: fc.constantFrom(...others),
    sector: fc.oneof(validSectorId, badId),
    entity: fc.oneof(validEntityId, badId),
    body: anyBody
  }).map(({ body, entity, method, sector }) => ({
    kind: "wrong method",
    method,
    path: route.path(sector, entity),
    headers: {},
    body: method === "GET" || method === "HEAD" ? undefined : body,
    expect: [405]
  }))
})

/** Methods Node's parser does not know: refused before routing, 400. */
const unknownMethod: fc.Arbitrary<Malformed> = fc.record({
  method: fc.constantFrom("FOO", "BREW", "GETS", "POSTS", "X-METHOD", "DELET", "PATCHX", "FETCH", "UPDATE", "SETUP"),
  route: fc.constantFrom(...routes),
  sector: validSectorId
}).map(({ method, route, sector }) => ({
  kind: "unknown method",
  method,
  path: route.path(sector, "1"),
  headers: {},
  body: undefined,
  expect: [400]
}))

/** Methods Node knows (WebDAV and friends) that no path of the API has: on a known path, 405 with `Allow`. */
const foreignMethod: fc.Arbitrary<Malformed> = fc.record({
  method: fc.constantFrom("PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "SEARCH", "PURGE", "REPORT", "LINK"),
  route: fc.constantFrom(...routes),
  sector: validSectorId
}).map(({ method, route, sector }) => ({
  kind: "foreign method",
  method,
  path: route.path(sector, "1"),
  headers: {},
  body: undefined,
  expect: [405]
}))

/** Route names (the router matches them case-insensitively, after percent-decoding). */
const routeWords = new Set(["sectors", "healthz", "readyz", "metrics", "status"])
const sectorWords = new Set(["ops", "flush", "dead-letters", "entities"])
const segment = segmentText.map(encodeURIComponent).filter(notDotSegment)
const not = (words: ReadonlySet<string>) => (encoded: string) => {
  const decoded = decodeURIComponent(encoded).toLowerCase()
  return !words.has(decoded) && !decoded.includes("/")
}

/** Paths no route matches: 404 for any of the API's methods. */
const unknownRoute: fc.Arbitrary<Malformed> = fc.record({
  path: fc.oneof(
    fc.tuple(segment.filter(not(routeWords)), fc.array(segment, { maxLength: 3 })).map(([first, rest]) =>
      `/${[first, ...rest].join("/")}`
    ),
    fc.tuple(fc.oneof(validSectorId, badId), segment.filter(not(sectorWords))).map(([s, x]) => `/sectors/${s}/${x}`),
    fc.tuple(validSectorId, validEntityId, segment).map(([s, e, x]) => `/sectors/${s}/entities/${e}/${x}`),
    fc.tuple(validSectorId, segment).map(([s, x]) => `/sectors/${s}/ops/${x}`),
    fc.constantFrom("/status", "/sectors/1/entities", "/api/sectors/1/ops", "/sectors/1/ops/ops", "/metrics/x", "/healthzz")
  ),
  method: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "QUERY"),
  body: anyBody
}).map(({ body, method, path }) => ({
  kind: "unknown route",
  method,
  path,
  headers: {},
  body: method === "GET" ? undefined : body,
  expect: [404]
}))

/** The API's GET and flush routes with at least one bad id: 400. */
const badIds: fc.Arbitrary<Malformed> = fc.oneof(
  fc.oneof(
    fc.tuple(badId, fc.oneof(validEntityId, badId)),
    fc.tuple(validSectorId, badId)
  ).map(([s, e]) => ({ method: "GET", path: `/sectors/${s}/entities/${e}` })),
  badId.map((s) => ({ method: "GET", path: `/sectors/${s}` })),
  badId.map((s) => ({ method: "GET", path: `/sectors/${s}/dead-letters` })),
  badId.map((s) => ({ method: "POST", path: `/sectors/${s}/flush` }))
).map(({ method, path }) => ({ kind: "bad id", method, path, headers: {}, body: undefined, expect: [400] }))

// ---- submissions: POST /sectors/{sector}/ops ----

/** A body and what is wrong with it: nothing, something worth a 400, or a limit it is over (413). */
interface Body {
  readonly kind: string
  readonly body: string | Uint8Array | { readonly stream: number }
  readonly status: 0 | 400 | 413
}

const validOp = Arbitraries.op({ entities: seededEntities, hot: 4 })
const validOps = fc.array(validOp, { minLength: 1, maxLength: 12 })
const anyJson = fc.jsonValue({ maxDepth: 3 })

const parses = (text: string) => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

/** Names an object has through its prototype. */
const prototypeKey = fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty")

/** Ops with one thing wrong each. */
const badOp: fc.Arbitrary<unknown> = fc.oneof(
  // not an op object at all
  fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.boolean(), fc.array(fc.integer(), { maxLength: 3 })),
  // no such type, or none
  fc.tuple(
    validOp,
    fc.oneof(fc.constantFrom("Set", "SET", "put", "", "upsert", " set", "delete "), fc.integer(), fc.constantFrom(null, undefined))
  ).map(([op, type]) => ({ ...op, type })),
  // entity not a non-negative safe integer, or missing
  fc.tuple(
    validOp,
    fc.oneof(
      fc.integer({ max: -1 }),
      fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x)),
      fc.constantFrom(2 ** 53, 1e300, Number.MAX_VALUE, "1", "abc", null, true, [], {}, undefined)
    )
  ).map(([op, entity]) => ({ ...op, entity })),
  // component not 1 to 64 of [A-Za-z0-9_.-], or missing
  fc.tuple(
    validOp.filter((op) => op.type !== "delete"),
    fc.oneof(
      fc.constantFrom("", "a".repeat(65), "a b", "é", "💩", "a/b", "a\u0000", "a\nb", 1, null, undefined),
      fc.string({ unit: "binary", maxLength: 70 }).filter((s) => !/^[A-Za-z0-9_.-]{1,64}$/.test(s))
    )
  ).map(([op, component]) => ({ ...op, component })),
  // data not a JSON object, missing, or with what PostgreSQL cannot store (NUL, lone surrogates)
  fc.tuple(
    validOp.filter((op) => op.type === "set"),
    fc.constantFrom<unknown>(
      undefined, null, [], [1, 2], "x", 1, true,
      { s: "a\u0000b" }, { "k\u0000": 1 }, { deep: { list: ["x\u0000"] } },
      { s: "\ud800" }, { "\udfff": 1 }, { a: ["ok", "\udc00x"] }, { s: "a\ud83d" }
    )
  ).map(([op, data]) => ({ ...op, data })),
  // worker not 1 to 128 printable ASCII characters without spaces (or null), or missing
  fc.tuple(
    validOp.filter((op) => op.type === "authority"),
    fc.constantFrom<unknown>("", "w 1", "w".repeat(129), "é", "w\u0000", 1, true, {}, [], undefined)
  ).map(([op, worker]) => ({ ...op, worker })),
  // a field the op does not have (prototype names too: JSON.parse makes them own fields)
  fc.tuple(validOp, fc.oneof(fc.string({ minLength: 1, maxLength: 10 }), prototypeKey), anyJson)
    .filter(([op, key]) => !Object.keys(op).includes(key))
    .map(([op, key, value]) => ({ ...op, [key]: value })),
  // a field it needs, missing
  validOp.chain((op) =>
    fc.constantFrom(...Object.keys(op)).map((key) => {
      const { [key as keyof Op.Op]: _, ...rest } = op
      return rest
    })
  )
)

/** Valid ops with invalid ones mixed in, in any order: the whole request must be refused. */
const mixedOps = fc.tuple(fc.array(validOp, { maxLength: 10 }), fc.array(badOp, { minLength: 1, maxLength: 3 }))
  .chain(([good, bad]) => fc.shuffledSubarray<unknown>([...good, ...bad], { minLength: good.length + bad.length }))

/** `depth` levels of arrays or objects around `inner`. */
const nested = (depth: number, objects: boolean, inner = "1") =>
  objects ? `${"{\"a\":".repeat(depth)}${inner}${"}".repeat(depth)}` : `${"[".repeat(depth)}${inner}${"]".repeat(depth)}`

/** Byte sequences that are never UTF-8: a stray continuation, an overlong NUL, a surrogate, a cut-off character. */
const notUtf8 = fc.constantFrom(
  [0xff], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]
)

const body: fc.Arbitrary<Body> = fc.oneof(
  // valid: only sent with a bad id or a bad ack
  {
    weight: 12,
    arbitrary: validOps.map((ops) => ({ kind: "valid ops", body: JSON.stringify({ ops }), status: 0 as const }))
  },
  {
    weight: 6,
    arbitrary: fc.oneof(
      fc.constantFrom(
        "", " ", "{", "[", "{ops:[]}", "{'ops':[]}", "undefined", "NaN", "{\"ops\":[1,]}", "{\"ops\":[]} x", "\u0000", "nul"
      ),
      fc.string({ unit: "binary", maxLength: 300 }).filter((s) => !parses(s))
    ).map((text) => ({ kind: "not JSON", body: text, status: 400 as const }))
  },
  {
    weight: 8,
    arbitrary: validOps.chain((ops) => {
      const text = JSON.stringify({ ops })
      return fc.nat({ max: text.length - 1 }).map((cut) => ({
        kind: "truncated JSON",
        body: text.slice(0, cut),
        status: 400 as const
      }))
    })
  },
  {
    weight: 8,
    arbitrary: fc.oneof(
      anyJson.filter((v) => !(isRecord(v) && "ops" in v)),
      anyJson.filter((v) => !Array.isArray(v)).map((ops) => ({ ops })),
      fc.constant({ ops: [] }),
      fc.tuple(validOps, fc.oneof(fc.string({ maxLength: 10 }), prototypeKey).filter((k) => k !== "ops"), anyJson)
        .map(([ops, k, v]) => ({ ops, [k]: v })),
      validOps.map((ops) => [{ ops }]),
      validOps
    ).map((value) => ({ kind: "wrong shape", body: JSON.stringify(value), status: 400 as const }))
  },
  {
    weight: 30,
    arbitrary: mixedOps.map((ops) => ({ kind: "bad ops", body: JSON.stringify({ ops }), status: 400 as const }))
  },
  {
    weight: 6,
    arbitrary: fc.tuple(validOps, notUtf8, fc.nat()).map(([ops, bytes, at]) => {
      const text = Buffer.from(JSON.stringify({ ops }))
      const cut = at % (text.length + 1)
      const body = Buffer.concat([text.subarray(0, cut), Buffer.from(bytes), text.subarray(cut)])
      return { kind: "not UTF-8", body, status: 400 as const }
    })
  },
  {
    weight: 4,
    arbitrary: fc.tuple(
      fc.integer({ min: limits.maxOpsPerRequest + 1, max: limits.maxOpsPerRequest + 40 }),
      fc.option(badOp, { nil: undefined })
    ).map(([count, bad]) => {
        const ops: Array<unknown> = Array.from({ length: count }, (_, i) => ({ type: "delete", entity: i }))
        if (bad !== undefined) ops.push(bad)
        return { kind: "too many ops", body: JSON.stringify({ ops }), status: 413 as const }
      })
  },
  {
    weight: 4,
    arbitrary: fc.tuple(mixedOps, fc.nat({ max: 200 }), fc.boolean()).map(([ops, extra, wide]) => {
      // as JSON, {"s":"…"} is 8 bytes more than the string; "é" is 2 bytes of UTF-8
      const s = wide ? "é".repeat(limits.maxDataBytes / 2 + extra) : "x".repeat(limits.maxDataBytes + extra)
      const big = { type: "set", entity: 1, component: "big", data: { s } }
      return { kind: "data too large", body: JSON.stringify({ ops: [...ops, big] }), status: 413 as const }
    })
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.integer({ min: 1, max: 4096 }), fc.boolean(), fc.boolean()).map(([extra, json, stream]) => {
      const size = limits.maxBodyBytes + extra
      if (stream) return { kind: "body too large (chunked)", body: { stream: size }, status: 413 as const }
      const text = json ? `{"ops":[${" ".repeat(size - 10)}]}` : "x".repeat(size)
      return { kind: "body too large", body: text, status: 413 as const }
    })
  },
  {
    weight: 6,
    arbitrary: fc.tuple(
      fc.oneof(
        { weight: 9, arbitrary: fc.integer({ min: tooDeep, max: 5_000 }) },
        { weight: 1, arbitrary: fc.integer({ min: 5_000, max: 100_000 }) }
      ),
      fc.boolean(),
      fc.constantFrom("data", "op", "ops", "body", "extra")
    ).map(([depth, objects, where]) => {
      const deep = nested(depth, objects)
      const text = where === "data"
        ? `{"ops":[{"type":"set","entity":1,"component":"a","data":{"x":${deep}}}]}`
        : where === "op"
        ? `{"ops":[${deep}]}`
        : where === "ops"
        ? `{"ops":${deep}}`
        : where === "body"
        ? deep
        : `{"ops":[{"type":"delete","entity":1}],"x":${deep}}`
      return { kind: `too deep (${where})`, body: text, status: 413 as const }
    })
  }
)

/** `?ack=`: absent, valid, or not `accepted`/`durable` (also repeated, empty, wrong case). */
const ackQuery = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom("", "?ack=accepted", "?ack=durable", "?ACK=foo", "?x=1").map((q) => ({ q, bad: false }))
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constantFrom(
        "?ack=foo", "?ack=", "?ack=DURABLE", "?ack=Accepted", "?ack=durable&ack=durable", "?ack=1", "?ack=%00",
        "?ack=durable%20", "?ack=true"
      ),
      fc.string({ unit: "binary", maxLength: 12 }).filter((s) => s !== "accepted" && s !== "durable")
        .map((s) => `?ack=${encodeURIComponent(s)}`)
    ).map((q) => ({ q, bad: true }))
  }
)

/**
 * Content types: mostly JSON (with a charset or none, which the API reads), so the body's defects are what is judged;
 * sometimes one a browser sends cross-site without a preflight, or none, which earns 415 before the body is read.
 */
const contentType = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom<Record<string, string>>(
      { "content-type": "application/json" }, { "content-type": "application/json; charset=utf-8" },
      { "content-type": "Application/JSON;charset=latin1" }
    )
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Record<string, string>>(
      {}, { "content-type": "text/plain" }, { "content-type": "application/xml" },
      { "content-type": "application/x-www-form-urlencoded" }, { "content-type": "multipart/form-data; boundary=x" },
      { "content-type": "garbage/\u00e9" }, { "content-type": "application/jsonx" }
    )
  }
)

/** Submissions with at least one defect in the sector, the ack or the body: 413 if the body is over a limit, else 400. */
const submission: fc.Arbitrary<Malformed> = fc.record({
  sector: fc.oneof(
    { weight: 1, arbitrary: badId.map((s) => ({ s, bad: true })) },
    { weight: 3, arbitrary: validSectorId.map((s) => ({ s, bad: false })) }
  ),
  ack: ackQuery,
  headers: contentType,
  body
}).filter(({ ack, body, sector }) => sector.bad || ack.bad || body.status !== 0).map(({ ack, body, headers, sector }) => ({
  kind: `submission: ${[sector.bad ? "bad sector" : "", ack.bad ? "bad ack" : "", body.kind].filter((x) => x).join(", ")}`,
  method: "POST",
  path: `/sectors/${sector.s}/ops${ack.q}`,
  headers,
  body: body.body,
  expect: [body.status === 413 ? 413 : 400]
}))

/** HTTP that Node's parser refuses: problem+json all the same. */
const raw: fc.Arbitrary<Raw> = fc.constantFrom<Raw>(
  { kind: "raw: not HTTP", raw: "GARBAGE\r\n\r\n", expect: [400] },
  { kind: "raw: bad header", raw: "GET /sectors HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n", expect: [400] },
  { kind: "raw: NUL in header", raw: "GET /sectors HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\u0000b\r\n\r\n", expect: [400] },
  {
    kind: "raw: length and chunked",
    raw: "POST /sectors/1/ops HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    expect: [400]
  },
  {
    kind: "raw: bad chunk",
    raw: "POST /sectors/1/ops HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    expect: [400]
  },
  { kind: "raw: bad length", raw: "POST /sectors/1/ops HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n", expect: [400] },
  {
    kind: "raw: headers too large",
    raw: `GET /sectors HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ${"a".repeat(20_000)}\r\n\r\n`,
    expect: [431]
  }
)

/** The token of the host the authentication run starts; the requests below never carry it. */
const token = "bad-input-token-5b1e"

/**
 * Authorization headers that must not let a request through: none, another scheme, a wrong token, one that only
 * starts or ends like the token, a malformed value, one large enough to be expensive (still under Node's 16 KiB
 * header limit: 401), or larger (the parser's 431).
 */
const badAuthorization: fc.Arbitrary<{ readonly defect: string; readonly header?: string; readonly status: number }> = fc
  .oneof(
    fc.constant({ defect: "missing", status: 401 }),
    fc.constantFrom("Basic", "Digest", "Token", "Bearer:", "Bearer\t", "bearer-").map((scheme) => ({
      defect: "wrong scheme",
      header: `${scheme} ${token}`,
      status: 401
    })),
    fc.stringMatching(/^[A-Za-z0-9._~+/-]{1,40}$/).filter((t) => t !== token).map((t) => ({
      defect: "wrong token",
      header: `Bearer ${t}`,
      status: 401
    })),
    fc.constantFrom(token.slice(0, -1), `${token}x`, token.toUpperCase(), `x${token}`).map((t) => ({
      defect: "near token",
      header: `Bearer ${t}`,
      status: 401
    })),
    fc.constantFrom("Bearer", "Bearer ", `Bearer ${token} ${token}`, `${token}`, "Bearer \u00e9\u00e9", ", ,", "=").map((
      header
    ) => ({ defect: "malformed", header, status: 401 })),
    fc.integer({ min: 4_096, max: 15_000 }).map((n) => ({ defect: "oversized", header: `Bearer ${"a".repeat(n)}`, status: 401 })),
    fc.integer({ min: 17_000, max: 40_000 }).map((n) => ({
      defect: "over the header limit",
      header: `Bearer ${"a".repeat(n)}`,
      status: 431
    }))
  )

/** Requests to every route but the probes, each one valid but for its Authorization header. */
const unauthenticated: fc.Arbitrary<Malformed> = fc.record({
  route: fc.constantFrom(...routes.filter((route) => !["/healthz", "/readyz"].includes(route.path("0", "0")))),
  sector: validSectorId,
  entity: validEntityId,
  ops: validOps,
  auth: badAuthorization
}).map(({ auth, entity, ops, route, sector }) => {
  const method = route.methods[0]!
  return {
    kind: `auth: ${auth.defect}`,
    method,
    path: route.path(sector, entity) + (method === "POST" && route.path("0", "0").endsWith("/ops") ? "?ack=durable" : ""),
    headers: {
      ...(auth.header === undefined ? {} : { authorization: auth.header }),
      ...(method === "POST" ? { "content-type": "application/json" } : {})
    },
    body: method === "POST" ? JSON.stringify({ ops }) : undefined,
    expect: [auth.status]
  }
})

const malformed: fc.Arbitrary<Request> = fc.oneof(
  { weight: 60, arbitrary: submission },
  { weight: 10, arbitrary: wrongMethod },
  { weight: 10, arbitrary: unknownRoute },
  { weight: 10, arbitrary: badIds },
  { weight: 3, arbitrary: unknownMethod },
  { weight: 3, arbitrary: foreignMethod },
  { weight: 2, arbitrary: raw }
)

// ---- sending and checking ----

const preview = (value: unknown) => {
  const text = value instanceof Uint8Array ? `<${value.length} bytes>` : JSON.stringify(value) ?? "undefined"
  return text.length > 160 ? `${text.slice(0, 160)}… (${text.length} chars)` : text
}

const describeRequest = (request: Request) =>
  "raw" in request
    ? `[${request.kind}] ${preview(request.raw)}`
    : `[${request.kind}] ${request.method} ${request.path} ${JSON.stringify(request.headers)} body ${preview(request.body)}`

/** A body of `size` spaces in 16 KB chunks, without a Content-Length (chunked transfer). */
const streamOf = (size: number) => {
  let left = size
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const n = Math.min(left, 16_384)
      left -= n
      if (n > 0) controller.enqueue(new Uint8Array(n).fill(0x20))
      if (left === 0) controller.close()
    }
  })
}

/** One answer, as far as the checks need it. */
interface Answer {
  readonly status: number
  readonly contentType: string | null
  readonly allow: string | null
  readonly text: string
}

const sendFetch = async (baseUrl: string, request: Malformed): Promise<Answer> => {
  const body = request.body
  const response = await fetch(`${baseUrl}${request.path}`, {
    method: request.method,
    headers: request.headers,
    signal: AbortSignal.timeout(30_000),
    ...(body === undefined
      ? {}
      : typeof body === "string" || body instanceof Uint8Array
      ? { body }
      : { body: streamOf(body.stream), duplex: "half" })
  } as RequestInit)
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    allow: response.headers.get("allow"),
    text: await response.text()
  }
}

/** Writes `raw` to a fresh connection and reads the answer until the server closes it. */
const sendRaw = (port: number, raw: string): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    const timer = setTimeout(() => socket.destroy(new Error("no answer within 30 s")), 30_000)
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    socket.on("close", () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString("utf8")
      const [head = "", ...rest] = text.split("\r\n\r\n")
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)
      const header = (name: string) => new RegExp(`^${name}: (.*)$`, "im").exec(head)?.[1]?.trim() ?? null
      resolve({ status, contentType: header("content-type"), allow: header("allow"), text: rest.join("\r\n\r\n") })
    })
    socket.end(raw)
  })

/**
 * Whether the API refuses `request` for its content type (415, before routing and before reading the body): a POST
 * with a type that is not JSON, or with a body and no type — as fetch sends it, which gives a string body without a
 * type `text/plain;charset=UTF-8` and an empty byte body no body at all.
 */
const refusedAsNotJson = (request: Malformed): boolean => {
  if (request.method !== "POST") return false
  const declared = Object.entries(request.headers).find(([name]) => name.toLowerCase() === "content-type")?.[1]
  const type = declared ?? (typeof request.body === "string" ? "text/plain;charset=UTF-8" : undefined)
  if (type !== undefined) return !/^\s*application\/json\s*(?:;|$)/i.test(type)
  return request.body !== undefined && !(request.body instanceof Uint8Array && request.body.length === 0)
}

/** The statuses the API defines for `request`. */
const expected = (request: Request): ReadonlyArray<number> =>
  !("raw" in request) && refusedAsNotJson(request) ? [415] : request.expect

/** What is wrong with `answer` to `request` (undefined when it is the problem the API defines). */
const judge = (request: Request, answer: Answer): string | undefined => {
  const wrong = (what: string) => `${describeRequest(request)}: ${what}; got ${answer.status} ${preview(answer.text)}`
  const expect = expected(request)
  if (!expect.includes(answer.status)) return wrong(`expected ${expect.join(" or ")}`)
  if (answer.contentType?.split(";")[0] !== "application/problem+json") return wrong(`content-type ${answer.contentType}`)
  if (answer.status === 405 && (answer.allow === null || answer.allow === "")) return wrong("405 without Allow")
  if (!("raw" in request) && request.method === "HEAD") return undefined // no body, by HTTP
  let problem: unknown
  try {
    problem = JSON.parse(answer.text)
  } catch {
    return wrong("body is not JSON")
  }
  if (!isRecord(problem)) return wrong("body is not an object")
  for (const field of ["type", "title", "detail"]) {
    if (typeof problem[field] !== "string" || problem[field] === "") return wrong(`no ${field}`)
  }
  if (problem.status !== answer.status) return wrong(`body status ${problem.status}`)
  if (answer.status === 400 || answer.status === 413) {
    const errors = problem.errors
    if (!Array.isArray(errors) || errors.length === 0) return wrong("no errors")
    for (const error of errors) {
      if (
        !isRecord(error) || typeof error.field !== "string" || typeof error.message !== "string" ||
        (error.index !== undefined && !(Number.isSafeInteger(error.index) && (error.index as number) >= 0))
      ) return wrong(`malformed errors entry ${preview(error)}`)
    }
  }
  return undefined
}

/** A wrong answer: the request's kind, the status it got (0: none), and what was wrong. */
interface Failure {
  readonly kind: string
  readonly status: number
  readonly message: string
}

/** Tally of a run. */
interface Tally {
  readonly statuses: Map<number, number>
  readonly failures: Array<Failure>
  slowestMs: number
}

/** The failures in one line per kind and status, then the first few in full: 5xx, 2xx and no answer first. */
const report = (failures: ReadonlyArray<Failure>) => {
  const counts = new Map<string, number>()
  for (const { kind, status } of failures) {
    const key = `${kind} → ${status}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  const rank = (status: number) => (status >= 500 ? 0 : status < 300 ? 1 : 2)
  const worst = [...failures].sort((a, b) => rank(a.status) - rank(b.status)).slice(0, 12)
  return [
    `${failures.length} wrong answers`,
    ...[...counts].map(([key, count]) => `  ${count} × ${key}`),
    ...worst.map((failure) => `  ${failure.message}`)
  ].join("\n")
}

/** Sends `batch` `concurrency` at a time, judging every answer into `tally`. */
const sendAll = (host: Host, port: number, batch: ReadonlyArray<Request>, tally: Tally) =>
  Effect.forEach(batch, (request) =>
    Effect.promise(async () => {
      const started = performance.now()
      let answer: Answer
      try {
        answer = "raw" in request ? await sendRaw(port, request.raw) : await sendFetch(host.baseUrl, request)
      } catch (error) {
        const message = `${describeRequest(request)}: no answer (${String(error)})`
        tally.failures.push({ kind: request.kind, status: 0, message })
        return
      }
      tally.slowestMs = Math.max(tally.slowestMs, performance.now() - started)
      tally.statuses.set(answer.status, (tally.statuses.get(answer.status) ?? 0) + 1)
      const failure = judge(request, answer)
      if (failure !== undefined) tally.failures.push({ kind: request.kind, status: answer.status, message: failure })
    }), { concurrency, discard: true })

// ---- memory ----

/**
 * The host's JavaScript heap in use right after a full garbage collection (bytes), through its inspector (the host
 * runs with `--inspect` on a free loopback port). Unlike RSS, this does not move with how lazily V8 collects and
 * gives memory back: what grows here between two readings is held on to.
 */
const heapAfterGc = async (host: Host): Promise<number> => {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(host.output())?.[1]
  if (url === undefined) throw new Error(`no inspector URL in the host's output:\n${host.output().slice(0, 2_000)}`)
  const socket = new WebSocket(url)
  await new Promise((resolve, reject) => {
    socket.addEventListener("open", resolve, { once: true })
    socket.addEventListener("error", reject, { once: true })
  })
  let next = 0
  const send = (method: string) =>
    new Promise<any>((resolve, reject) => {
      const id = ++next
      const onMessage = (event: MessageEvent) => {
        const message = JSON.parse(String(event.data))
        if (message.id !== id) return
        socket.removeEventListener("message", onMessage)
        if (message.error !== undefined) reject(new Error(`${method}: ${JSON.stringify(message.error)}`))
        else resolve(message.result)
      }
      socket.addEventListener("message", onMessage)
      socket.send(JSON.stringify({ id, method }))
    })
  try {
    await send("HeapProfiler.collectGarbage")
    const usage: { usedSize: number } = await send("Runtime.getHeapUsage")
    return usage.usedSize
  } finally {
    socket.close()
  }
}

/** The host's memory after a full collection: heap in use, and resident set (VmRSS). */
const memory = (host: Host) =>
  Effect.promise(async () => {
    const heap = await heapAfterGc(host)
    return { heap, rss: await rss(host.child.pid!) }
  })

// ---- state ----

/** Everything a malformed request must not change: what the API shows and what the database holds. */
const snapshot = (host: Host, url: string) =>
  Effect.promise(async () => {
    const get = async (path: string) => {
      const response = await call(host.baseUrl, "GET", path)
      return { status: response.status, body: response.body as unknown }
    }
    const api: Record<string, unknown> = { list: await get("/sectors") }
    for (const sector of seeded) {
      api[`/sectors/${sector}`] = await get(`/sectors/${sector}`)
      api[`/sectors/${sector}/dead-letters`] = await get(`/sectors/${sector}/dead-letters`)
      for (let entity = 0; entity < seededEntities; entity++) {
        api[`/sectors/${sector}/entities/${entity}`] = await get(`/sectors/${sector}/entities/${entity}`)
      }
    }
    const listed = (api.list as { body: { sectors: Array<{ sector: number }> } }).body.sectors.map((s) => s.sector)
    const rows = await Verify.readSectors(url, [...seeded, ...untouched])
    const received = metric(await scrape(host.baseUrl), "sectors_ops_received_total")
    return { api, listed, rows: [...rows], received }
  })

describe("bad input", () => {
  it.live(
    "thousands of generated malformed requests: every one a 4xx problem, zero 5xx, memory flat, state unchanged",
    () =>
      Effect.gen(function*() {
        const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
        const host = yield* scoped({
          DATABASE_URL: url,
          MAX_BODY_BYTES: String(limits.maxBodyBytes),
          MAX_OPS_PER_REQUEST: String(limits.maxOpsPerRequest),
          MAX_DATA_BYTES: String(limits.maxDataBytes),
          // the seeded sectors must stay exactly as they are, not be passivated in a long run
          PASSIVATE_AFTER: "Infinity",
          // for `heapAfterGc`: an inspector on a free loopback port
          NODE_OPTIONS: "--inspect=127.0.0.1:0"
        })
        const port = Number(new URL(host.baseUrl).port)

        // seed: a few sectors with valid ops, all durable
        const seedOps = fc.sample(Arbitraries.ops({ entities: seededEntities, hot: 4 }, { min: 60, max: 60 }), {
          numRuns: seeded.length,
          seed
        })
        for (const [i, sector] of seeded.entries()) {
          for (let from = 0; from < 60; from += 20) {
            const response = yield* Effect.promise(() =>
              call(host.baseUrl, "POST", `/sectors/${sector}/ops?ack=durable`, { ops: seedOps[i]!.slice(from, from + 20) })
            )
            assert.strictEqual(response.status, 200, JSON.stringify(response.body))
          }
        }
        const before = yield* snapshot(host, url)
        assert.deepStrictEqual(before.listed, [...seeded])

        const all = fc.sample(malformed, { numRuns: requests, seed })
        const kinds = new Map<string, number>()
        /** Every defect planted at least once: a generator change must not quietly stop covering one. */
        const defects = new Set<string>()
        for (const request of all) {
          const kind = request.kind.startsWith("submission") ? "submission" : request.kind.replace(/:.*/, "")
          kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
          if (kind !== "submission") defects.add(kind)
          else {
            for (const part of request.kind.slice("submission: ".length).split(", ")) {
              defects.add(part.replace(/ \((?!chunked).*\)$/, ""))
            }
          }
        }
        assert.deepStrictEqual(
          [
            "wrong method", "unknown method", "foreign method", "unknown route", "bad id", "raw", "bad sector",
            "bad ack", "not JSON", "truncated JSON", "wrong shape", "bad ops", "not UTF-8", "too many ops",
            "data too large", "body too large", "body too large (chunked)", "too deep"
          ].filter((defect) => !defects.has(defect)),
          [],
          `defects planted: ${[...defects].join(", ")}`
        )
        const tally: Tally = { statuses: new Map(), failures: [], slowestMs: 0 }
        const started = performance.now()
        yield* sendAll(host, port, all.slice(0, warmUp), tally)
        const warm = yield* memory(host)
        yield* sendAll(host, port, all.slice(warmUp), tally)
        const seconds = (performance.now() - started) / 1000
        const end = yield* memory(host)
        const after = yield* snapshot(host, url)
        const growth = (bytes: number) => `${bytes >= 0 ? "+" : ""}${mb(bytes)}`

        console.log(
          `bad input: ${all.length} malformed requests (seed ${seed}) in ${seconds.toFixed(1)} s ` +
            `(${(all.length / seconds).toFixed(0)}/s, ${concurrency} at a time), ` +
            `slowest answer ${tally.slowestMs.toFixed(0)} ms; ` +
            `statuses ${JSON.stringify(Object.fromEntries([...tally.statuses].sort(([a], [b]) => a - b)))}; ` +
            `kinds ${JSON.stringify(Object.fromEntries(kinds))}; ` +
            `host memory after a full GC, after ${warmUp} warm-up requests → at the end: ` +
            `RSS ${mb(warm.rss)} → ${mb(end.rss)} (${growth(end.rss - warm.rss)}), ` +
            `heap ${mb(warm.heap)} → ${mb(end.heap)} (${growth(end.heap - warm.heap)})`
        )

        // every answer the problem the API defines for it; not one 5xx
        assert.isTrue(tally.failures.length === 0, report(tally.failures))
        assert.deepStrictEqual([...tally.statuses.keys()].filter((status) => status < 400 || status >= 500), [])
        assert.strictEqual([...tally.statuses.values()].reduce((a, b) => a + b, 0), all.length)
        // nothing the host could not handle, and nothing logged as an internal failure
        assert.notInclude(host.output(), "\"level\":\"ERROR\"", host.output().slice(-2_000))
        // memory flat
        assert.isBelow(end.heap - warm.heap, heapGrowthBound, `heap after GC ${mb(warm.heap)} → ${mb(end.heap)}`)
        assert.isBelow(end.rss - warm.rss, rssGrowthBound, `RSS after GC ${mb(warm.rss)} → ${mb(end.rss)}`)
        // state unchanged: only the seeded sectors exist, the API shows the same, the database holds the same, and
        // not one op was received
        assert.deepStrictEqual(after.listed, [...seeded])
        assert.deepStrictEqual(after.api, before.api)
        assert.deepStrictEqual(after.rows, before.rows)
        assert.strictEqual(after.received, before.received)
        for (const [sector, durable] of after.rows) {
          if (untouched.includes(sector)) {
            assert.deepStrictEqual(durable, { persistedSeq: 0, rows: { components: [], authority: [] } }, `sector ${sector}`)
          }
        }
      }),
    { timeout: pick(120_000, 900_000) }
  )

  it.live(
    "with AUTH_TOKEN set, every request without the right bearer token gets 401 (431 past the header limit), nothing applied",
    () =>
      Effect.gen(function*() {
        const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
        const host = yield* scoped({ DATABASE_URL: url, AUTH_TOKEN: token, PASSIVATE_AFTER: "Infinity" })
        const port = Number(new URL(host.baseUrl).port)
        const all = fc.sample(unauthenticated, { numRuns: pick(1_500, 10_000), seed })
        const defects = new Set(all.map((request) => request.kind))
        assert.deepStrictEqual(
          ["missing", "wrong scheme", "wrong token", "near token", "malformed", "oversized", "over the header limit"]
            .filter((defect) => !defects.has(`auth: ${defect}`)),
          []
        )
        const tally: Tally = { statuses: new Map(), failures: [], slowestMs: 0 }
        yield* sendAll(host, port, all, tally)
        console.log(
          `bad input, authentication: ${all.length} requests, statuses ` +
            JSON.stringify(Object.fromEntries([...tally.statuses].sort(([a], [b]) => a - b)))
        )
        assert.isTrue(tally.failures.length === 0, report(tally.failures))
        assert.deepStrictEqual([...tally.statuses.keys()].sort(), [401, 431])
        assert.notInclude(host.output(), token, "the token is never logged")
        // nothing was applied: the host, asked with the token, has no sector and has received no op
        const listed = yield* Effect.promise(() =>
          fetch(`${host.baseUrl}/sectors`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.json())
        )
        assert.deepStrictEqual((listed as { sectors: Array<unknown> }).sectors, [])
        const metrics = yield* Effect.promise(() =>
          fetch(`${host.baseUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.text())
        )
        assert.notMatch(metrics, /^sectors_ops_received_total(\{[^}]*\})? [1-9]/m)
      }),
    { timeout: pick(120_000, 900_000) }
  )
})
