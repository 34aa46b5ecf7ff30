import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { PgEmbedded } from "../src/index.ts"
import { TestDatabase } from "../src/testing.ts"

describe("TestDatabase", () => {
  it.live("gives each suite its own database on the run's server, dropped afterwards", () =>
    Effect.gen(function*() {
      const name = yield* Effect.gen(function*() {
        const { url } = yield* PgEmbedded.DatabaseUrl
        yield* Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          yield* sql`CREATE TABLE t (id int)`
          yield* sql`INSERT INTO t VALUES (1), (2)`
          const rows = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM t`
          assert.strictEqual(rows[0]?.n, 2)
        }).pipe(Effect.provide(PgClient.layer({ url, maxConnections: 1 })))
        return new URL(Redacted.value(url)).pathname.slice(1)
      }).pipe(Effect.provide(TestDatabase.layer))
      assert.match(name, /^sectors_test_/)
      const left = yield* Effect.gen(function*() {
        const sql = yield* PgClient.PgClient
        return yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_database WHERE datname = ${name}`
      }).pipe(Effect.provide(PgClient.layer({ url: TestDatabase.serverUrl(), maxConnections: 1 })))
      assert.strictEqual(left[0]?.n, 0)
    }))
})
