/**
 * WebSocket ingest (`GET /ingest`, the README's "WebSocket ingest"): a producer keeps one connection open and sends
 * text frames, each one submission — `{"id", "sector", "ops", "ack"?, "idempotencyKey"?}` — and the host answers every
 * frame exactly once with the same `id`: `{"id", "sector", "accepted", "firstSeq", "lastSeq"}` (`"persisted": true`
 * for `ack: "durable"`, `"replayed": true` for a recognised key), or `{"id", "error": <problem>}` with the problem
 * details the HTTP API answers the same mistake with (`id` null when it cannot be read).
 *
 * A frame is checked as a POST body is, by the same functions (`Request`): its size against `maxBodyBytes`, its JSON,
 * the limits on it (nesting, `maxOpsPerRequest`, `maxDataBytes`: 413), then every field at once (400). It goes to its
 * sector through `Sectors`, so a runner of a cluster forwards it to the sector's owner; an `ack: "durable"` frame
 * waits in one of the host's `maxDurableWaiters` places (`DurableWaiters`), shared with the HTTP API.
 *
 * The upgrade request passes the `Guard` like any request (loopback `Host`, bearer token): refused, it gets the
 * problem response and no WebSocket. Client mistakes never close the connection; protocol violations do, with a close
 * code and reason: a binary frame 1003, a frame over `maxBodyBytes` 1009 (the WebSocket server refuses it while
 * reading it, `websocketOptions`), text that is not UTF-8 1007.
 *
 * **Order.** Frames for one sector are submitted in the order they arrive, each once the one before it has its seqs
 * (an accepted frame once it is answered, a durable one once it is accepted): their seqs follow the frame order, and
 * the answers to accepted frames come in that order. A durable frame is answered when it is durable, which may be
 * after the answers to later frames. Frames for other sectors run meanwhile.
 *
 * **Backpressure.** At most `maxInflightFrames` frames of a connection are read and unanswered at once; at the bound
 * the socket is paused (the frames left of a chunk already read, at most 64 KiB, are held unread), so TCP pushes back
 * on the client, and it is read again once an answer frees a place. Nothing is buffered without bound.
 *
 * **Speed.** The frames come straight from the WebSocket (`IngestWire`, around effect's `Socket` reader) and are read
 * in the event that delivers them: a frame refused, or taken at once by its sector (`Sectors.trySubmit`), is answered
 * there, without a fiber; a durable frame its sector takes at once (`Sectors.trySubmitDurable`) waits as a callback on
 * the sector's watermark, answered where the wait ends (a commit, its deadline) — no fiber either; only a frame that
 * must wait otherwise (one with a key, one whose sector is busy or asleep) runs in a fiber of the connection's. The
 * usual frame is read straight from its text (`SubmissionScan`: no `JSON.parse`, its data measured for the buffer
 * budget as it is read), and an answer known to be ASCII is written without being measured
 * (`IngestWire.latin1Frames`).
 *
 * **Shutdown.** From the shutdown signal on (`Lifecycle`), frames are answered with `ShuttingDown` (503) without being
 * submitted; once every frame read is answered — durable ones when the host's final flush makes them durable — the
 * connection is closed with 1001. A connection closed by its client interrupts its frames in flight: their durable
 * waits give their places back, nothing of the connection outlives it.
 *
 * **Gotchas** in a cluster (`RUNNER_PORT`), a frame goes to its sector's entity, which answers once, so there a durable
 * frame still holds back the frames after it for the same sector on the same connection until it is durable (or
 * times out): the order of seqs is the order of frames.
 */
import { type Batch, Errors, type Op, type Sector, SectorsConfig } from "@sectors/core"
import { Cause, Effect, Exit, FiberSet, Latch, Metric, Predicate, Result } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpServerResponse } from "effect/http"
import * as Socket from "effect/socket/Socket"
import * as http from "node:http"
import type * as Net from "node:net"
import type { DurableWaiters } from "./DurableWaiters.ts"
import { HostConfig } from "./HostConfig.ts"
import * as IngestWire from "./IngestWire.ts"
import { Lifecycle } from "./Lifecycle.ts"
import * as Problem from "./Problem.ts"
import * as Request from "./Request.ts"
import * as Sectors from "./Sectors.ts"
import * as SubmissionScan from "./SubmissionScan.ts"

/** A frame's `id` as the client sent it, or `null` when it has none that can be read. */
export type FrameId = string | number | null

/** The fields a frame may carry. */
const frameFields: ReadonlyArray<string> = ["id", "sector", "ops", "ack", "idempotencyKey"]

const frameShape = `{"id": ..., "sector": ..., "ops": [...]}`

/** WebSocket close codes the host uses (RFC 6455 §7.4.1). */
export const closeCodes = {
  /** The host is shutting down. */
  goingAway: 1001,
  /** A binary frame: the API speaks JSON text frames. */
  unsupportedData: 1003,
  /** A frame larger than `maxBodyBytes`. */
  messageTooBig: 1009,
  /** The host failed: a bug. */
  internalError: 1011
} as const

/** WebSocket connections open now on `/ingest`. */
export const connections = Metric.gauge("sectors_ingest_connections", {
  description: "WebSocket connections open on /ingest"
})

/** Frames read on `/ingest` and not answered yet, over every connection. */
export const unansweredFrames = Metric.gauge("sectors_ingest_unanswered_frames", {
  description: "Frames read on /ingest and not answered yet, over every connection"
})

/** What the server's WebSocket support must be told: a frame over `maxBodyBytes` is refused (1009) as it is read. */
export const websocketOptions = (config: Pick<HostConfig["Service"], "maxBodyBytes">) => ({
  maxPayload: config.maxBodyBytes
})

/** A frame read: a submission to make, or the problem to answer it with. */
export type Frame =
  | { readonly _tag: "Refused"; readonly id: FrameId; readonly problem: Problem.Problem }
  | {
    readonly _tag: "Submission"
    readonly id: FrameId
    readonly sector: number
    readonly ops: ReadonlyArray<Op.Op>
    readonly ack: "accepted" | "durable"
    readonly key: string | undefined
    /** Each op's `JSON.stringify(data)` length, where the read measured it (`SubmissionScan`). */
    readonly dataLengths?: Batch.DataLengths | undefined
  }

const frameId = (body: unknown): FrameId =>
  Predicate.isObject(body) && (typeof body.id === "string" || typeof body.id === "number") ? body.id : null

/**
 * Reads one text frame as a POST body is read (`Http.submit`): JSON, then the limits (413), then every field (400) —
 * the usual frame straight from its text (`SubmissionScan.frame`, which takes only what `parseFrame` takes, and reads
 * it the same), any other by `parseFrame`.
 */
const readFrame = (text: string, config: HostConfig["Service"]): Frame =>
  SubmissionScan.frame(text, config) ?? parseFrame(text, config)

/** Reads one text frame the full way: `JSON.parse`, the limits (413), then every field (400). */
export const parseFrame = (text: string, config: HostConfig["Service"]): Frame => {
  const json = Request.parseJsonResult(text)
  if (Result.isFailure(json)) return { _tag: "Refused", id: null, problem: json.failure }
  const body = json.success
  const overLimits = Request.limitIssues(body, config, text.length)
  if (overLimits.length > 0) return { _tag: "Refused", id: frameId(body), problem: Problem.tooLarge(overLimits) }
  return plainFrame(body, config.maxOpsPerRequest) ?? checkFrame(body, config)
}

const frameFieldSet: ReadonlySet<string> = new Set(frameFields)

/**
 * A frame without a key whose every field is plainly valid (the usual frame), read by hand without a `Result` per
 * field; `undefined` for anything else, which `checkFrame` reads and says what is wrong with. What it takes,
 * `checkFrame` would take the same.
 */
export const plainFrame = (body: unknown, maxOps: number): Submission | undefined => {
  if (!Predicate.isObject(body)) return undefined
  const { ack, id, idempotencyKey, ops, sector } = body as Record<string, unknown>
  if (
    (typeof id !== "number" && typeof id !== "string") || typeof sector !== "number" ||
    !Number.isSafeInteger(sector) || sector < 0 || (ack !== undefined && ack !== "accepted" && ack !== "durable") ||
    idempotencyKey !== undefined
  ) return undefined
  for (const field in body) if (!frameFieldSet.has(field)) return undefined
  const plain = Request.plainOps(ops, maxOps)
  return plain === undefined
    ? undefined
    // `+ 0`: a sector -0 is read as 0, as `Request.parseId` reads it
    : { _tag: "Submission", id, sector: sector + 0, ops: plain, ack: ack ?? "accepted", key: undefined }
}

/** Reads a frame's fields (after its JSON and limits), every mistake in it at once (400). */
export const checkFrame = (body: unknown, config: HostConfig["Service"]): Frame => {
  const id = frameId(body)
  const fields: Record<string, unknown> = Predicate.isObject(body) ? body : {}
  const sectorField = fields.sector
  const sector = Request.parseId(
    "sector",
    typeof sectorField === "number" || typeof sectorField === "string" ? String(sectorField) : undefined
  )
  const ack = Request.parseAck(fields.ack as string | undefined)
  const key = Request.parseKey("idempotencyKey", fields.idempotencyKey)
  const envelope = Request.envelopeIssues(body, frameFields, frameShape)
  const ops = Predicate.isObject(body) ? Request.decodeOps(body.ops, config.maxOpsPerRequest) : Result.succeed([])
  if (
    id !== null && Result.isSuccess(sector) && Result.isSuccess(ack) && Result.isSuccess(key) &&
    envelope.length === 0 && Result.isSuccess(ops)
  ) {
    return { _tag: "Submission", id, sector: sector.success, ops: ops.success, ack: ack.success, key: key.success }
  }
  const issues: Array<Problem.Issue> = [
    ...(id === null && Predicate.isObject(body)
      ? [{ field: "id", message: "must be a string or a number, to match the answer to the frame" }]
      : []),
    ...(Result.isFailure(sector) ? [sector.failure] : []),
    ...(Result.isFailure(ack) ? [ack.failure] : []),
    ...(Result.isFailure(key) ? [key.failure] : []),
    ...envelope,
    ...(Result.isFailure(ops) ? ops.failure : [])
  ]
  return { _tag: "Refused", id, problem: Problem.invalid(issues) }
}

export type Submission = Extract<Frame, { _tag: "Submission" }>

/** The answer to a refused frame, as JSON text. */
const refusal = (id: FrameId, problem: Problem.Problem): string => JSON.stringify({ id, error: Problem.body(problem) })

/**
 * The answer to an accepted frame, as JSON text: `{"id", "sector", "accepted", "firstSeq", "lastSeq"}`, then
 * `"persisted": true` for a durable frame and `"replayed": true` for a known key. Written out rather than built and
 * stringified (most of an accepted frame's answer cost): every value but a string `id` is a number or `true`.
 */
const answer = (frame: Submission, accepted: Sector.Accepted): string =>
  `{"id":${typeof frame.id === "number" ? frame.id : JSON.stringify(frame.id)},"sector":${frame.sector},` +
  `"accepted":${accepted.accepted},"firstSeq":${accepted.firstSeq},"lastSeq":${accepted.lastSeq}` +
  `${frame.ack === "durable" ? `,"persisted":true` : ""}${accepted.replayed === true ? `,"replayed":true` : ""}}`

/**
 * The handler of `GET /ingest`, over the host's durable waiters (shared with the HTTP API). Needs the sectors, the
 * configuration and the lifecycle.
 */
export const make = (waiters: DurableWaiters) =>
  Effect.gen(function*() {
    const sectors = yield* Sectors.Sectors
    const config = yield* HostConfig
    const sectorsConfig = yield* SectorsConfig.SectorsConfig
    const lifecycle = yield* Lifecycle
    const context = yield* Effect.context<never>()

    // the gauges are read when a scrape asks (`Metric.registerUnsafe`), not updated frame by frame
    let openConnections = 0
    let unanswered = 0
    for (const [gauge, read] of [[connections, () => openConnections], [unansweredFrames, () => unanswered]] as const) {
      const registration = Metric.registerUnsafe(gauge, context, {
        get: () => ({ value: read() }),
        update: () => {},
        modify: () => {}
      })
      yield* Effect.addFinalizer(() => Effect.sync(registration.remove))
    }

    /**
     * Submits one valid frame and renders its answer, success or problem; `onAccepted` hears when a durable frame has
     * its seqs (see `Sectors.SubmitOptions`).
     */
    const submit = (frame: Submission, onAccepted?: () => void) => {
      const idempotency = frame.key === undefined
        ? undefined
        : { key: frame.key, fingerprint: Sectors.fingerprintOps(frame.ops) }
      const durable = frame.ack === "durable"
      const submitted = durable
        ? waiters.waiting(sectors.submit(frame.sector, frame.ops, {
          ack: "durable",
          durableTimeout: config.durableTimeout,
          mailboxWait: sectorsConfig.mailboxWait,
          idempotency,
          onAccepted
        }))
        : sectors.submit(frame.sector, frame.ops, { ack: "accepted", mailboxWait: sectorsConfig.mailboxWait, idempotency })
      return submitted.pipe(
        Effect.map((accepted) => answer(frame, accepted)),
        Effect.catch((error) => Effect.map(Problem.of(error), (problem) => refusal(frame.id, problem))),
        Effect.catchCause(unexpected(frame))
      )
    }
    const unexpected = (frame: Submission) => <E>(cause: Cause.Cause<E>): Effect.Effect<string, E> =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.failCause(cause)
        : Effect.map(
          Problem.incident(Problem.internal, "Error", "an /ingest frame failed unexpectedly", cause),
          (problem) => refusal(frame.id, problem)
        )

    /**
     * A frame its sector takes at once (most frames of a busy stream: `Sectors.trySubmit`), answered without a fiber or
     * an effect pipeline of its own; `undefined` when it must be submitted the usual way.
     */
    const submitNow = (frame: Submission): Exit.Exit<Sector.Accepted> | undefined =>
      frame.ack === "accepted" && frame.key === undefined
        ? sectors.trySubmit(frame.sector, frame.ops, frame.dataLengths)
        : undefined

    /**
     * Serves one upgraded connection until it closes; `raw`: its TCP socket, when the server is Node's. Its frames are
     * read and answered by the wire (`IngestWire`), frame by frame in the event that delivers them, without a fiber for
     * the frames taken at once (`submitNow`) or refused; a frame that must wait runs in a fiber of the connection's.
     */
    const serve = (socket: Socket.Socket, raw: Net.Socket | undefined) =>
      Effect.gen(function*() {
        // the upgrade: effect's reader answers 101 and opens the WebSocket, and closes it when this scope ends
        const { pull } = yield* socket.reader
        let inflight = 0
        // released after the frames' fibers are interrupted (their `finish` ran): what is left was never started
        yield* Effect.acquireRelease(
          Effect.sync(() => void openConnections++),
          () =>
            Effect.sync(() => {
              openConnections--
              unanswered -= inflight // frames of a connection that went away are no one's to answer
            })
        )
        const run = yield* FiberSet.makeRuntime<never, void, never>()
        /**
         * Per sector with a frame in flight that has no seqs yet, the frames after it, in order: `next` starts them once
         * it has.
         */
        const lanes = new Map<number, Array<Submission>>()
        /**
         * Frames `ws` delivered past the bound (the rest of a chunk it had read when the socket was paused), in order,
         * not read yet; `undefined` for a binary frame.
         */
        let held: Array<string | undefined> = []
        let heldAt = 0
        let paused = false
        let draining = false
        let closing = false
        /** No frame is read any more: the connection was closed, by the host or its client. */
        let done = false
        const ended = Latch.makeUnsafe(false)
        /** The waits of durable frames taken at once (`startDurable`): each ends unanswered when dropped. */
        const durableWaits = new Set<() => void>()
        // before a frame can be read: the connection is gone, so its durable waits end unanswered and give their
        // places back (as its fibers' do when they are interrupted)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            done = true
            for (const drop of durableWaits) drop() // each takes itself out of the set
          })
        )

        /** A frame must wait its turn: frames are held already, or the connection is at its bound. */
        const mustHold = () => heldAt < held.length || inflight >= config.maxInflightFrames
        const onText = (text: string) => {
          if (done) return
          if (mustHold()) hold(text)
          else read(text)
        }
        const onBinary = () => {
          if (done) return
          if (mustHold()) hold(undefined)
          else refuseBinary()
        }
        const onDefect = (defect: unknown) => {
          close(closeCodes.internalError, "the host failed unexpectedly")
          run(Effect.logError("an /ingest connection failed unexpectedly", Cause.die(defect)))
        }
        const wire = raw === undefined ? undefined : IngestWire.make(raw, { onText, onBinary, onDefect })
        if (wire === undefined) {
          const { write } = yield* socket.writer
          yield* Effect.ignore(write(new Socket.CloseEvent(closeCodes.internalError, "the WebSocket is not one of Node's server")))
          return yield* Effect.logError("/ingest needs Node's HTTP server and its ws WebSocket")
        }

        const close = (code: number, reason: string) => {
          if (done) return
          done = true
          wire.close(code, reason)
          ended.openUnsafe()
        }
        const refuseBinary = () => close(closeCodes.unsupportedData, "binary frames are not accepted: send JSON as text")
        const hold = (text: string | undefined) => {
          held.push(text)
          if (!paused) {
            paused = true
            wire.pause()
          }
        }
        /** Reads the held frames while there is room; reads the socket again once none is left. */
        const drain = () => {
          if (draining) return
          draining = true
          while (heldAt < held.length && inflight < config.maxInflightFrames && !done) {
            const text = held[heldAt++]
            if (text === undefined) refuseBinary()
            else read(text)
          }
          draining = false
          if (heldAt === held.length) {
            if (held.length > 0) {
              // a new array only once something was held: `finish` drains after every answer
              held = []
              heldAt = 0
            }
            if (paused && inflight < config.maxInflightFrames && !done) {
              paused = false
              wire.resume()
            }
          }
        }
        /** A frame is done — answered, or interrupted with its connection: its place is free. */
        const finish = () => {
          inflight--
          unanswered--
          if (done) return
          drain()
          if (closing && inflight === 0) close(closeCodes.goingAway, "the host is shutting down")
        }
        const finishing = Effect.sync(finish)
        /** Answers a frame now, and it is done; `ascii` as `IngestWire`'s `send` takes it. */
        const answerNow = (text: string, ascii?: boolean) => {
          wire.send(text, ascii)
          finish()
        }
        const send = (text: string) => Effect.sync(() => wire.send(text))

        /** Reads one frame: answers it at once when it can, or starts it, or queues it behind its sector's frame. */
        const read = (text: string) => {
          if (text.length > config.maxBodyBytes / 3 && Buffer.byteLength(text, "utf8") > config.maxBodyBytes) {
            return close(closeCodes.messageTooBig, `a frame may be at most ${config.maxBodyBytes} bytes`)
          }
          inflight++
          unanswered++
          if (inflight >= config.maxInflightFrames && !paused) {
            // at the bound: nothing more is read until an answer frees a place
            paused = true
            wire.pause()
          }
          const frame = readFrame(text, config)
          if (frame._tag === "Refused") return answerNow(refusal(frame.id, frame.problem))
          if (closing) {
            return answerNow(refusal(frame.id, Problem.fromError(new Errors.ShuttingDown({ sectorId: frame.sector }))))
          }
          const queued = lanes.get(frame.sector)
          if (queued !== undefined) return void queued.push(frame)
          if (!start(frame)) lanes.set(frame.sector, [])
        }

        /**
         * Submits a frame of a sector with none in flight on this connection: at once when its sector takes it
         * (`submitNow`), in a fiber otherwise. Whether the frame has its seqs already — then the sector's next frame can
         * go — or its sector's frames must wait for it (`next` runs when it has them: an accepted frame when it is
         * answered, a durable one as soon as it is accepted; its answer waits for durability in its fiber, and may come
         * after those of later frames).
         */
        const start = (frame: Submission): boolean => {
          if (frame.key === undefined && frame.ack === "durable" && startDurable(frame)) return true
          const now = submitNow(frame)
          if (now !== undefined && Exit.isSuccess(now)) {
            // a numeric id: the answer is all ASCII (numbers and `true` besides)
            answerNow(answer(frame, now.value), typeof frame.id === "number")
            return true
          }
          if (now !== undefined) {
            answerDefect(frame, now.cause)
            return true
          }
          return startInFiber(frame)
        }
        /**
         * `start`'s way for a frame its sector does not take at once: submitted in a fiber of the connection's. Whether
         * it has its seqs already (see `start`). Apart from `start` so that a frame taken at once allocates none of
         * what this closes over.
         */
        const startInFiber = (frame: Submission): boolean => {
          let hasSeqs = false
          let waitedFor = false
          // once, when it has its seqs or its answer (refused, or forwarded in a cluster: no word before then)
          const seqs = () => {
            if (hasSeqs) return
            hasSeqs = true
            if (waitedFor) next(frame.sector)
          }
          run(Effect.ensuring(
            Effect.flatMap(submit(frame, frame.ack === "durable" ? seqs : undefined), send),
            Effect.sync(() => {
              seqs()
              finish()
            })
          ))
          waitedFor = !hasSeqs
          return hasSeqs
        }
        /** A defect applying a frame: answered (500) in a fiber, and the sector's frames go on, as the intake does. */
        const answerDefect = (frame: Submission, cause: Cause.Cause<never>) =>
          run(Effect.ensuring(Effect.flatMap(unexpected(frame)(cause), send), finishing))

        /**
         * A durable frame its sector takes at once (`Sectors.trySubmitDurable`), in one of the host's durable places:
         * it has its seqs now, and its wait is a callback on the sector's watermark, answered where the wait ends —
         * no fiber. `false` when it must be submitted the usual way (nothing applied, no place held; with no place
         * left, that way refuses it).
         */
        const startDurable = (frame: Submission): boolean => {
          if (!waiters.tryTake()) return false
          let cancel: (() => void) | undefined
          let waiting = true
          /** Ends the wait: its place given back, and no longer the connection's to drop. */
          const end = () => {
            waiting = false
            waiters.giveBack()
            durableWaits.delete(drop)
          }
          const drop = () => {
            if (!waiting) return
            end()
            cancel?.()
            inflight--
            unanswered--
          }
          const onDurable = (exit: Exit.Exit<Sector.Accepted, Sector.DurableWaitError>) => {
            if (!waiting) return
            end()
            try {
              if (Exit.isSuccess(exit)) return answerNow(answer(frame, exit.value), typeof frame.id === "number")
              const error = Cause.findError(exit.cause)
              if (Result.isSuccess(error)) answerNow(refusal(frame.id, Problem.fromError(error.success)))
              else answerDefect(frame, error.failure)
            } catch (defect) {
              onDefect(defect)
            }
          }
          const now = sectors.trySubmitDurable(frame.sector, frame.ops, {
            dataLengths: frame.dataLengths,
            timeout: config.durableTimeout,
            onDurable
          })
          if (now === undefined || Exit.isFailure(now)) {
            end()
            if (now !== undefined) answerDefect(frame, now.cause)
            return now !== undefined
          }
          if (waiting) {
            cancel = now.value
            durableWaits.add(drop)
          }
          return true
        }

        /** The frame in flight for `sector` has its seqs: its sector's queued frames go on, in order, until one waits. */
        const next = (sector: number) => {
          const queued = lanes.get(sector)!
          while (queued.length > 0) {
            if (done) return
            if (!start(queued.shift()!)) return
          }
          lanes.delete(sector)
        }

        yield* Effect.forkScoped(Effect.andThen(
          lifecycle.awaitShutdown,
          Effect.sync(() => {
            closing = true
            if (inflight === 0) close(closeCodes.goingAway, "the host is shutting down")
          })
        ))
        // effect's reader now only tells when the connection closed (its pull fails then), after handing over any
        // frame it took before the wire did (none in practice: a client sends its first frame after the 101)
        run(Effect.forever(Effect.flatMap(pull, (chunk) =>
          Effect.sync(() => {
            for (const data of chunk) typeof data === "string" ? onText(data) : onBinary()
          }))).pipe(
            Effect.ignore,
            Effect.ensuring(Effect.sync(() => {
              done = true
              ended.openUnsafe()
            }))
          ))
        yield* ended.await
      }).pipe(
        // the client closed the connection, or it broke: the connection's scope interrupts what is left of it
        Effect.catchIf(Socket.isSocketError, () => Effect.void),
        Effect.scoped
      )

    return (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (request.headers.upgrade?.toLowerCase() !== "websocket") return Problem.toResponse(Problem.upgradeRequired)
        const socket = yield* request.upgrade
        const source: unknown = request.source
        yield* serve(socket, source instanceof http.IncomingMessage ? source.socket as Net.Socket : undefined)
        return HttpServerResponse.empty()
      }).pipe(Effect.catch((error) => Problem.answer(error)))
  })
