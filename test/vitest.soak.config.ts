/** The long variants of the fault and cluster tests (`npm run test:soak`): `soak` provided, long timeouts. */
import { defineConfig, mergeConfig } from "vitest/config"
import { withPostgres } from "../vitest.shared.ts"

export default mergeConfig(withPostgres, defineConfig({
  test: {
    include: ["faults/**/*.test.ts", "cluster/**/*.test.ts"],
    provide: { soak: true },
    testTimeout: 900_000,
    hookTimeout: 300_000,
    // one scenario at a time: they load the machine and measure it
    fileParallelism: false
  }
}))
