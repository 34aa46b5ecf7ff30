/**
 * Whether this run is the long one (`npm run test:soak`): fault tests read it to pick their CI or soak variant
 * (e.g. an 8 s or a 30 s outage, 5 or 20 SIGTERMs). The soak config provides `soak: true`; plain `npm test` does not.
 */
import { inject } from "vitest"

declare module "vitest" {
  export interface ProvidedContext {
    soak: boolean
  }
}

export const soak: boolean = inject("soak") === true

/** `ci` in the normal run, `long` in the soak run. */
export const pick = <A>(ci: A, long: A): A => (soak ? long : ci)
