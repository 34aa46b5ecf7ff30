/**
 * @sectors/pg-embedded/testing — throwaway databases for tests on the run's server (see `testing/globalSetup.ts`).
 */
export * as TestDatabase from "./TestDatabase.ts"
