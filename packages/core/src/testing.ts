/**
 * @sectors/core/testing — the test kit: the memory sink with its store open for inspection, a fault-injecting
 * wrapper for any sink, a host on both with fast retries, a counting test clock, fast-check arbitraries for ops and
 * arrival timelines, a model checker for batching configurations, and the conformance suite every `SectorSink` must
 * pass.
 */
export * as Arbitraries from "./testing/Arbitraries.ts"
export * as CountingClock from "./testing/CountingClock.ts"
export * as FaultSink from "./testing/FaultSink.ts"
export * as MemorySink from "./testing/MemorySink.ts"
export * as ModelCheck from "./testing/ModelCheck.ts"
export * as SinkConformance from "./testing/SinkConformance.ts"
export * as TestHost from "./testing/TestHost.ts"
