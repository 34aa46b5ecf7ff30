/**
 * @sectors/core — supervised sector actors with a Schedule-driven, collapsing write-behind batcher.
 * This file is the table of contents; each module documents itself.
 */
export * as Batch from "./Batch.ts"
export * as BatchPolicy from "./BatchPolicy.ts"
export * as Errors from "./Errors.ts"
export * as Metrics from "./Metrics.ts"
export * as Op from "./Op.ts"
export * as Resilience from "./Resilience.ts"
export * as SectorSink from "./SectorSink.ts"
export * as SectorState from "./SectorState.ts"
export * as SectorsConfig from "./SectorsConfig.ts"
export * as Sector from "./Sector.ts"
export * as SectorHost from "./SectorHost.ts"
