/**
 * The conformance suite every `SectorSink` must pass — the contract in `SectorSink.ts`, as vitest tests. Call
 * `suite(name, layer)` from a test file with a layer that provides a fresh sink; the memory sink and the PostgreSQL
 * sink both run it. Each test uses its own sector ids, so one sink instance serves the whole suite.
 */
import { assert, layer as layerSuite } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { Batch, Entry } from "../Batch.ts"
import { Pending } from "../Batch.ts"
import type * as Op from "../Op.ts"
import { type LoadedSector, SectorSink } from "../SectorSink.ts"
import * as SectorState from "../SectorState.ts"

let nextSector = 1_000_000 + Math.floor(Math.random() * 1_000_000) * 10

/** A sector id no other test of this run uses. */
const freshSector = () => nextSector++

/** The batch for `ops`, whose seqs start at `firstSeq`. */
export const batchOf = (
  sectorId: number,
  epoch: number,
  ops: ReadonlyArray<Op.Op>,
  firstSeq = 1
): Batch => {
  const pending = new Pending()
  ops.forEach((op, i) => pending.add(op, firstSeq + i, 0))
  return pending.toBatch(sectorId, epoch, "manual")
}

const set = (entity: number, component: string, x: number): Op.Op => ({
  type: "set",
  entity,
  component,
  data: { x }
})

/** Registers the conformance tests for the sink `layer` provides. */
export const suite = <E>(name: string, layer: Layer.Layer<SectorSink, E>): void =>
  layerSuite(layer, { excludeTestServices: true })(`SectorSink conformance: ${name}`, (it) => {
    it.effect("load claims a new sector at epoch 1 with nothing durable, and claims again with epoch + 1", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const first = yield* sink.load(sectorId)
        assert.strictEqual(first.epoch, 1)
        assert.strictEqual(first.persistedSeq, 0)
        assert.deepStrictEqual(first.rows, { components: [], authority: [] })
        const second = yield* sink.load(sectorId)
        assert.strictEqual(second.epoch, 2)
      }))

    it.effect("read neither claims nor creates: a sector never written reads as empty at epoch 0, and stays so", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const empty = yield* sink.read(sectorId)
        assert.deepStrictEqual(
          [empty.epoch, empty.persistedSeq, empty.persistedAt, empty.rows],
          [0, 0, undefined, { components: [], authority: [] }]
        )
        yield* sink.read(sectorId)
        assert.strictEqual((yield* sink.load(sectorId)).epoch, 1)
      }))

    it.effect("read returns the durable rows and watermark at the current epoch without fencing its owner", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const { epoch } = yield* sink.load(sectorId)
        const ops = [set(1, "a", 1), set(2, "b", 2)]
        yield* sink.persist(batchOf(sectorId, epoch, ops))
        const read = yield* sink.read(sectorId)
        assert.deepStrictEqual([read.epoch, read.persistedSeq], [epoch, 2])
        assert.isDefined(read.persistedAt)
        assert.deepStrictEqual(read.rows, SectorState.toRows(SectorState.fold(ops)))
        // the owner still writes under its epoch
        yield* sink.persist(batchOf(sectorId, epoch, [set(3, "c", 3)], 3))
        assert.strictEqual((yield* sink.read(sectorId)).persistedSeq, 3)
      }))

    it.effect("persists a batch and loads exactly the rows the ops fold to", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const { epoch } = yield* sink.load(sectorId)
        const ops: Array<Op.Op> = [
          set(1, "position", 1),
          set(1, "hp", 10),
          set(2, "position", 2),
          { type: "authority", entity: 1, component: "position", worker: "w-1" },
          { type: "remove", entity: 1, component: "hp" },
          set(1, "position", 3),
          { type: "delete", entity: 2 },
          set(2, "velocity", 4),
          { type: "authority", entity: 3, component: "hp", worker: "w-2" }
        ]
        yield* sink.persist(batchOf(sectorId, epoch, ops))
        const loaded = yield* sink.load(sectorId)
        assert.strictEqual(loaded.persistedSeq, ops.length)
        assert.isDefined(loaded.persistedAt)
        assert.deepStrictEqual(SectorState.sortRows(loaded.rows), SectorState.toRows(SectorState.fold(ops)))
      }))

    it.effect("applies removes and deletes over earlier batches, guarded by seq", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const { epoch } = yield* sink.load(sectorId)
        const first: Array<Op.Op> = [set(1, "a", 1), set(1, "b", 2), set(2, "a", 3), set(3, "a", 4)]
        const second: Array<Op.Op> = [
          { type: "remove", entity: 1, component: "a" },
          { type: "delete", entity: 2 },
          set(2, "c", 5),
          { type: "authority", entity: 3, component: "a", worker: "w" },
          { type: "authority", entity: 3, component: "a", worker: null }
        ]
        yield* sink.persist(batchOf(sectorId, epoch, first))
        yield* sink.persist(batchOf(sectorId, epoch, second, first.length + 1))
        const loaded = yield* sink.load(sectorId)
        assert.deepStrictEqual(SectorState.sortRows(loaded.rows), SectorState.toRows(SectorState.fold([...first, ...second])))
      }))

    it.effect("treats a replayed batch as a no-op, even after later batches", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const { epoch } = yield* sink.load(sectorId)
        const first = batchOf(sectorId, epoch, [set(1, "a", 1), set(2, "a", 2)])
        const second = batchOf(sectorId, epoch, [{ type: "delete", entity: 1 }, set(2, "a", 3)], 3)
        yield* sink.persist(first)
        yield* sink.persist(first)
        yield* sink.persist(second)
        yield* sink.persist(first)
        yield* sink.persist(second)
        const loaded = yield* sink.load(sectorId)
        assert.strictEqual(loaded.persistedSeq, 4)
        assert.deepStrictEqual(
          loaded.rows.components.map((row) => [row.entity, row.component, row.data, row.seq]),
          [[2, "a", { x: 3 }, 4]]
        )
      }))

    it.effect("never lets an entry overwrite a row written by a higher seq", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const { epoch } = yield* sink.load(sectorId)
        yield* sink.persist(batchOf(sectorId, epoch, [set(1, "a", 1), set(1, "a", 2), set(1, "a", 3)]))
        // a batch whose range starts earlier but ends later (a failed batch merged with newer ops) replays seq 3
        const stale: Entry = { _tag: "Upsert", entity: 1, component: "a", data: { x: 99 }, seq: 2 }
        const merged: Batch = { sectorId, epoch, fromSeq: 1, toSeq: 4, ops: 4, trigger: "manual", entries: [stale] }
        yield* sink.persist(merged)
        const loaded = yield* sink.load(sectorId)
        assert.deepStrictEqual(loaded.rows.components.map((row) => row.data), [{ x: 3 }])
        assert.strictEqual(loaded.persistedSeq, 4)
      }))

    it.effect("fences a stale owner: its batches fail with Fenced and change nothing", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const stale = yield* sink.load(sectorId)
        const fresh = yield* sink.load(sectorId)
        yield* sink.persist(batchOf(sectorId, fresh.epoch, [set(1, "a", 1)]))
        const error = yield* Effect.flip(sink.persist(batchOf(sectorId, stale.epoch, [set(1, "a", 666), set(9, "a", 9)], 2)))
        assert.strictEqual(error._tag, "SinkError")
        assert.strictEqual(error.reason, "Fenced")
        assert.isFalse(error.isRetryable)
        const loaded = yield* sink.load(sectorId)
        assert.strictEqual(loaded.persistedSeq, 1)
        assert.deepStrictEqual(loaded.rows.components.map((row) => row.data), [{ x: 1 }])
      }))

    it.effect("stores a batch's idempotency keys with it, once, and forgets the ones expired by forgetKeysExpiredBy", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const { epoch } = yield* sink.load(sectorId)
        const record = (key: string, firstSeq: number, lastSeq: number, expiresAt: number) => ({
          key,
          fingerprint: `f-${key}`,
          firstSeq,
          lastSeq,
          expiresAt
        })
        const first: Batch = {
          ...batchOf(sectorId, epoch, [set(1, "a", 1), set(1, "a", 2)]),
          idempotencyKeys: [record("a", 1, 1, 1_700_000_000_000), record("b", 2, 2, 1_700_000_001_000)]
        }
        yield* sink.persist(first)
        yield* sink.persist(first) // a replay stores nothing twice
        const keysOf = (loaded: LoadedSector) => [...(loaded.idempotencyKeys ?? [])].sort((x, y) => x.lastSeq - y.lastSeq)
        assert.deepStrictEqual(keysOf(yield* sink.load(sectorId)), first.idempotencyKeys)
        const { epoch: next } = yield* sink.load(sectorId)
        // a fenced batch stores no key
        const stale = { ...batchOf(sectorId, epoch, [set(2, "a", 1)], 3), idempotencyKeys: [record("x", 3, 3, 1)] }
        assert.strictEqual((yield* Effect.flip(sink.persist(stale))).reason, "Fenced")
        // with a delete (sinks may write it differently from a batch of upserts only)
        const later: Batch = {
          ...batchOf(sectorId, next, [{ type: "delete", entity: 1 }, set(2, "a", 1)], 3),
          idempotencyKeys: [record("c", 3, 4, 1_700_000_002_000)],
          forgetKeysExpiredBy: 1_700_000_000_000
        }
        yield* sink.persist(later)
        assert.deepStrictEqual(keysOf(yield* sink.load(sectorId)).map((r) => r.key), ["b", "c"])
        const { epoch: third } = yield* sink.load(sectorId)
        yield* sink.persist({
          ...batchOf(sectorId, third, [set(3, "a", 1)], 5),
          idempotencyKeys: [record("d", 5, 5, 1_700_000_003_000)],
          forgetKeysExpiredBy: 1_700_000_001_500
        })
        assert.deepStrictEqual(keysOf(yield* sink.load(sectorId)).map((r) => r.key), ["c", "d"])
      }))

    it.effect("verify runs a batch without changing anything", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        const { epoch } = yield* sink.load(sectorId)
        yield* sink.verify(batchOf(sectorId, epoch, [set(1, "a", 1)]))
        const loaded = yield* sink.load(sectorId)
        assert.strictEqual(loaded.persistedSeq, 0)
        assert.deepStrictEqual(loaded.rows.components, [])
      }))

    it.effect("records dead letters and lists them per sector, oldest first", () =>
      Effect.gen(function*() {
        const sink = yield* SectorSink
        const sectorId = freshSector()
        yield* sink.load(sectorId)
        const letter = (seq: number) => ({
          sectorId,
          seq,
          entry: { _tag: "Upsert" as const, entity: 1, component: "a", data: { x: seq }, seq },
          error: "value rejected",
          code: "22P05",
          at: 1_700_000_000_000 + seq
        })
        yield* sink.deadLetter([letter(7)])
        yield* sink.deadLetter([letter(9)])
        const letters = yield* sink.deadLetters(sectorId)
        assert.deepStrictEqual(letters.map((l) => [l.seq, l.error, l.code, l.entry]), [
          [7, "value rejected", "22P05", letter(7).entry],
          [9, "value rejected", "22P05", letter(9).entry]
        ])
        assert.deepStrictEqual(yield* sink.deadLetters(freshSector()), [])
      }))
  })
