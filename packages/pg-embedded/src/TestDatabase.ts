/**
 * Throwaway databases for tests: each test file (or suite) gets its own freshly created database on the run's
 * server — the embedded one from the vitest global setup, or the external `DATABASE_URL` — and drops it when its
 * scope closes, so suites never see each other's rows, even against a shared external server.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { SqlError } from "effect/sql/SqlError"
import { inject } from "vitest"
import { DatabaseUrl, describeUrl, freshDatabase } from "./PgEmbedded.ts"

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the run's PostgreSQL server (a maintenance database on it), provided by the global setup. */
    readonly sectorsDatabaseUrl: string
  }
}

/**
 * Creates a uniquely named database on the server at `serverUrl` and yields its URL; the database is dropped
 * (connections terminated) when the scope closes. `PgEmbedded.freshDatabase`, under the name tests use.
 */
export const fresh = freshDatabase

/** The run's server URL, as provided by the vitest global setup. */
export const serverUrl = (): Redacted.Redacted<string> => Redacted.make(inject("sectorsDatabaseUrl"))

/** A `DatabaseUrl` naming a fresh database on the run's server, dropped when the layer is released. */
export const layer: Layer.Layer<DatabaseUrl, SqlError> = Layer.effect(
  DatabaseUrl,
  Effect.suspend(() => fresh(serverUrl())).pipe(
    Effect.map((url) =>
      DatabaseUrl.of({ url, source: "external", description: `test database ${describeUrl(Redacted.value(url))}` })
    )
  )
)
