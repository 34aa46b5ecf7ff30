/**
 * @sectors/sink-pg — the `SectorSink` of @sectors/core on PostgreSQL through @effect/sql-pg.
 * This file is the table of contents; each module documents itself.
 */
export * as Client from "./Client.ts"
export * as GroupCommit from "./GroupCommit.ts"
export * as HostLock from "./HostLock.ts"
export * as Migrations from "./Migrations.ts"
export * as SinkPg from "./SinkPg.ts"
export * as SqlState from "./SqlState.ts"
export * as Statements from "./Statements.ts"
export * as Stats from "./Stats.ts"
