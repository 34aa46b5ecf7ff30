/**
 * @sectors/workloads — the field report's workloads, the ops they draw, the loop that offers them to a
 * `SectorHost` second by second, and the summary statistics reports quote.
 */
export * as Driver from "./Driver.ts"
export * as OpSource from "./OpSource.ts"
export * as Summary from "./Summary.ts"
export * as Workload from "./Workload.ts"
