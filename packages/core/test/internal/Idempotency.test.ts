import { assert, describe, it } from "@effect/vitest"
import { Deferred } from "effect"
import * as fc from "fast-check"
import { type Entry, IdempotencyStore, type Seqs } from "../../src/internal/idempotency.ts"

const seqs = (): Seqs => Deferred.makeUnsafe()
const lastSeq = (entry: Entry | undefined) => (entry?._tag === "Accepted" ? entry.lastSeq : undefined)

describe("IdempotencyStore", () => {
  it("never holds more than maxKeys, and what it holds answers with the seqs it was given", () =>
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.array(fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 50 })), {
        maxLength: 60
      }),
      (maxKeys, submissions) => {
        const store = new IdempotencyStore({ ttlMillis: 100, maxKeys })
        let now = 0
        let seq = 0
        const given = new Map<string, number>()
        for (const [sector, key, dt] of submissions) {
          now += dt
          const found = store.find(sector, `k${key}`, now)
          if (found !== undefined) {
            assert.strictEqual(lastSeq(found), given.get(`${sector}/k${key}`))
            continue
          }
          const pending = store.begin(sector, `k${key}`, "f", seqs(), now)
          seq++
          store.accept(pending, seq, seq, now)
          given.set(`${sector}/k${key}`, seq)
          assert.isAtMost(store.size, maxKeys)
        }
      }
    )))

  it("forgets a key after the TTL, never before", () => {
    const store = new IdempotencyStore({ ttlMillis: 100, maxKeys: 10 })
    store.accept(store.begin(1, "a", "f", seqs(), 0), 1, 1, 0)
    assert.isDefined(store.find(1, "a", 99))
    assert.isUndefined(store.find(1, "a", 100))
  })

  it("a key with a short TTL expires on time even behind keys with a longer one", () => {
    const store = new IdempotencyStore({ ttlMillis: 1000, maxKeys: 10 })
    store.accept(store.begin(1, "long", "f", seqs(), 0), 1, 1, 0)
    store.accept(store.begin(1, "short", "f", seqs(), 0, 10), 2, 2, 0)
    assert.isDefined(store.find(1, "short", 9))
    assert.isUndefined(store.find(1, "short", 10))
    assert.isDefined(store.find(1, "long", 999))
    assert.strictEqual(store.size, 1)
  })

  it("keeps a pending key until its submission gets seqs or is refused", () => {
    const store = new IdempotencyStore({ ttlMillis: 100, maxKeys: 10 })
    const pending = store.begin(1, "a", "f", seqs(), 0)
    assert.strictEqual(store.find(1, "a", 500)?._tag, "Pending")
    store.forget(1, "a", pending)
    assert.isUndefined(store.find(1, "a", 500))
  })

  it("forgetting a key another submission has taken over leaves the newer one", () => {
    const store = new IdempotencyStore({ ttlMillis: 100, maxKeys: 10 })
    const first = store.accept(store.begin(1, "a", "f", seqs(), 0), 1, 1, 0)
    store.adopt(1, [{ key: "a", fingerprint: "f", firstSeq: 5, lastSeq: 5, expiresAt: 110 }], 10)
    store.forget(1, "a", first)
    assert.strictEqual(lastSeq(store.find(1, "a", 20)), 5)
  })

  it("adopts stored keys within the TTL only, never over a newer one it holds", () => {
    const store = new IdempotencyStore({ ttlMillis: 100, maxKeys: 10 })
    store.accept(store.begin(1, "b", "f", seqs(), 150), 9, 9, 150)
    store.adopt(1, [
      { key: "old", fingerprint: "f", firstSeq: 1, lastSeq: 1, expiresAt: 150 },
      { key: "a", fingerprint: "f", firstSeq: 2, lastSeq: 2, expiresAt: 220 },
      { key: "b", fingerprint: "f", firstSeq: 3, lastSeq: 3, expiresAt: 230 }
    ], 160)
    assert.isUndefined(store.find(1, "old", 160))
    assert.deepStrictEqual([lastSeq(store.find(1, "a", 160)), lastSeq(store.find(1, "b", 160))], [2, 9])
  })
})
