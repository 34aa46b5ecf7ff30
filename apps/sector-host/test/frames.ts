/** What the `/ingest` frame tests share: a frame with some of its fields changed, in any order of its fields. */
import * as fc from "fast-check"

/**
 * `frame` with each change applied (a field set to the value, or removed where the value is `undefined`), its fields
 * then in any order.
 */
export const changed = (
  frame: Record<string, unknown>,
  changes: ReadonlyArray<readonly [string, unknown]>
): fc.Arbitrary<Record<string, unknown>> => {
  const result: Record<string, unknown> = { ...frame }
  for (const [field, value] of changes) {
    if (value === undefined) delete result[field]
    else result[field] = value
  }
  return fc.shuffledSubarray(Object.entries(result), { minLength: Object.keys(result).length }).map(Object.fromEntries)
}
