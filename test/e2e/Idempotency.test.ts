/**
 * `Idempotency-Key` across a crash: a key is stored with the batch that made its ops durable, so a host restarted
 * after SIGKILL (or a new owner) answers the retry of an acknowledged-durable submission with the original seqs and
 * applies nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import { succession } from "../support/HostProcess.ts"

const submit = (baseUrl: string, key: string, body: unknown, ack = "durable") =>
  Effect.promise(async () => {
    const response = await fetch(`${baseUrl}/sectors/5/ops?ack=${ack}`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json", "idempotency-key": key }
    })
    const answer = (await response.json()) as { readonly lastSeq: number }
    return { status: response.status, replayed: response.headers.get("idempotent-replayed"), body: answer }
  })

describe("Idempotency-Key across a crash", () => {
  it.live("a retry after SIGKILL and a restart gets the original answer and applies nothing", () =>
    Effect.gen(function*() {
      const url = Redacted.value(yield* TestDatabase.fresh(TestDatabase.serverUrl()))
      const next = yield* succession({ DATABASE_URL: url })
      const body = { ops: [{ type: "set", entity: 1, component: "hp", data: { v: 10 } }] }

      const first = yield* Effect.promise(next)
      const original = yield* submit(first.baseUrl, "retry-me", body)
      assert.deepStrictEqual([original.status, original.replayed], [200, null])
      first.signal("SIGKILL")
      yield* Effect.promise(() => first.exited)

      const second = yield* Effect.promise(next)
      const retry = yield* submit(second.baseUrl, "retry-me", body)
      assert.deepStrictEqual([retry.status, retry.replayed, retry.body], [200, "true", original.body])
      const other = yield* submit(second.baseUrl, "retry-me", { ops: [{ type: "delete", entity: 1 }] })
      assert.strictEqual(other.status, 422)
      const status = yield* Effect.promise(() => fetch(`${second.baseUrl}/sectors/5`).then((r) => r.json() as Promise<{ lastSeq: number }>))
      assert.strictEqual(status.lastSeq, original.body.lastSeq)
    }).pipe(Effect.scoped), 120_000)
})
