/** SQLSTATE classification: by code, and of the errors a real server and driver report. */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Effect, Fiber, Layer } from "effect"
import { SqlState } from "../src/index.ts"

describe("SqlState.classify", () => {
  it.each([
    ["08006", "transient"],
    ["08P01", "transient"],
    ["40001", "transient"],
    ["40P01", "transient"],
    ["53300", "transient"],
    ["55P03", "transient"],
    ["57014", "transient"],
    ["57P01", "transient"],
    ["57P03", "transient"],
    ["ECONNRESET", "transient"],
    ["ECONNREFUSED", "transient"],
    ["EPIPE", "transient"],
    ["22P05", "rejected"],
    ["22001", "rejected"],
    ["23505", "rejected"],
    ["23514", "rejected"],
    ["54000", "rejected"],
    ["42P01", "fatal"],
    ["42601", "fatal"],
    ["28P01", "fatal"],
    ["3D000", "fatal"],
    ["XX000", "fatal"],
    ["EACCES", "fatal"]
  ] as const)("classifies %s as %s", (code, expected) => {
    assert.strictEqual(SqlState.classify(code), expected)
  })
})

const Database = Layer.unwrap(PgEmbedded.DatabaseUrl.useSync(({ url }) => PgClient.layer({ url, maxConnections: 2 })))
  .pipe(Layer.provide(TestDatabase.layer))

layer(Database, { excludeTestServices: true })("SqlState.classifyError on a real server", (it) => {
  const failure = (statement: string) =>
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      return yield* Effect.flip(sql.unsafe(statement))
    })

  it.effect("blames the data for a jsonb value PostgreSQL cannot store (\\u0000)", () =>
    Effect.gen(function*() {
      const error = yield* failure(`SELECT '{"a":"\\u0000"}'::jsonb`)
      assert.strictEqual(SqlState.codeOf(error), "22P05")
      assert.strictEqual(SqlState.classifyError(error), "rejected")
    }))

  it.effect("blames the data for a broken constraint", () =>
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      yield* sql`CREATE TABLE IF NOT EXISTS u (id int PRIMARY KEY)`
      yield* sql`INSERT INTO u VALUES (1) ON CONFLICT DO NOTHING`
      const error = yield* failure("INSERT INTO u VALUES (1)")
      assert.strictEqual(SqlState.classifyError(error), "rejected")
    }))

  it.effect("calls a missing table fatal, not the data's fault", () =>
    Effect.gen(function*() {
      const error = yield* failure("SELECT * FROM no_such_table")
      assert.strictEqual(SqlState.codeOf(error), "42P01")
      assert.strictEqual(SqlState.classifyError(error), "fatal")
    }))

  it.effect("retries a statement whose session another connection terminated (57P01)", () =>
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const victim = yield* Effect.forkChild(
        Effect.flip(sql.withTransaction(sql`SELECT pg_sleep(30), 'victim-marker'`)).pipe(
          Effect.catchDefect((defect) => Effect.succeed(defect as never))
        )
      )
      let terminated = 0
      while (terminated === 0) {
        yield* Effect.sleep(20)
        const rows = yield* sql<{ n: number }>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE query LIKE '%victim-marker%' AND pid <> pg_backend_pid()`
        terminated = rows[0]?.n ?? 0
      }
      const error = yield* Fiber.join(victim)
      // the driver reports either the server's 57P01 or, having read it, the closed connection without a code
      assert.include(["57P01", undefined], SqlState.codeOf(error))
      assert.strictEqual(SqlState.classifyError(error), "transient")
    }), { timeout: 20_000 })

  it.effect("retries a connection that closed under a statement (no SQLSTATE at all)", () =>
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const error = yield* Effect.flip(
        sql.withTransaction(sql.unsafe("SELECT pg_terminate_backend(pg_backend_pid())")).pipe(
          Effect.catchDefect((defect) => Effect.fail(defect as never))
        )
      )
      assert.strictEqual(error.reason._tag, "ConnectionError")
      assert.strictEqual(SqlState.classifyError(error), "transient")
    }))
})
