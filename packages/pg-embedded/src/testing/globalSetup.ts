/**
 * vitest global setup shared by every workspace that talks to PostgreSQL: starts one embedded server per test run
 * (throwaway cluster, durability off for speed) or uses `DATABASE_URL` when it is set, and provides its URL to the
 * tests as `inject("sectorsDatabaseUrl")`. Tests take their own database from it with `TestDatabase`.
 */
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { TestProject } from "vitest/node"
import { startAsync } from "../PgEmbedded.ts"
import "../TestDatabase.ts"

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = await Effect.runPromise(Config.option(Config.Redacted("DATABASE_URL")))
  if (Option.isSome(external)) {
    project.provide("sectorsDatabaseUrl", Redacted.value(external.value))
    return async () => {}
  }
  const server = await startAsync({
    settings: { fsync: "off", synchronous_commit: "off", full_page_writes: "off", max_connections: "300" }
  })
  project.provide("sectorsDatabaseUrl", server.url)
  return server.stop
}
