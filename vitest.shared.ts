/**
 * vitest settings shared by every workspace. `base` is for pure unit tests; `withPostgres` adds the global setup
 * that starts one embedded PostgreSQL per run (or uses `DATABASE_URL`) and hands its URL to the tests.
 */
import { fileURLToPath } from "node:url"
import { defineConfig, mergeConfig, type ViteUserConfig } from "vitest/config"

export const base: ViteUserConfig = defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000
  }
})

export const withPostgres: ViteUserConfig = mergeConfig(base, defineConfig({
  test: {
    globalSetup: [fileURLToPath(new URL("./packages/pg-embedded/src/testing/globalSetup.ts", import.meta.url))]
  }
}))
