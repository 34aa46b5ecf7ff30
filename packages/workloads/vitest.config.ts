import { base } from "../../vitest.shared.ts"

export default base
