/** vitest for the example: the shared settings with one embedded PostgreSQL per run (or `DATABASE_URL`). */
import { withPostgres } from "../../vitest.shared.ts"

export default withPostgres
