import { defineConfig, mergeConfig } from "vitest/config"
import { withPostgres } from "../vitest.shared.ts"

export default mergeConfig(withPostgres, defineConfig({
  test: {
    include: ["e2e/**/*.test.ts", "faults/**/*.test.ts", "cluster/**/*.test.ts"]
  }
}))
