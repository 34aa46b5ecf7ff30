/** vitest for sink-pg: the shared settings with one embedded PostgreSQL per run. */
import { withPostgres } from "../../vitest.shared.ts"

export default withPostgres
