/**
 * @sectors/core — supervised sector actors with a Schedule-driven, collapsing write-behind batcher.
 * This file is the table of contents; each module documents itself.
 */
export * as BatchPolicy from "./BatchPolicy.ts"
