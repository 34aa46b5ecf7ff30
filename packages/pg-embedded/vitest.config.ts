import { withPostgres } from "../../vitest.shared.ts"

export default withPostgres
