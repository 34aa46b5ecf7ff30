import { assert, describe, it } from "@effect/vitest"
import type { Driver } from "@sectors/workloads"
import * as Simulator from "../src/Simulator.ts"

const second: Driver.Second = {
  second: 7,
  offered: 10_000,
  accepted: 10_000,
  refused: 0,
  unfinished: 0,
  persisted: 9_950,
  batches: 199,
  collapsed: 3_980,
  commits: 40,
  durableMillis: Array.from({ length: 100 }, (_, i) => i + 1) // p99 is 99
}

describe("Simulator", () => {
  it("prints a second as one line: ops in and persisted, batches, mean batch, collapse, commits, p99 op→durable", () => {
    assert.strictEqual(
      Simulator.line(second),
      "t=   7s  in  10000/s  persisted   9950/s  batches   199/s  mean batch   50.0  collapse  40%  commits   40/s" +
        "  p99 op→durable   99 ms"
    )
  })

  it("says what was refused or left unfinished only when there was some, and '-' without latency samples", () => {
    const line = Simulator.line({ ...second, refused: 20, unfinished: 5, durableMillis: [] })
    assert.include(line, "in  10000/s (refused 20) (unfinished 5)  persisted")
    assert.match(line, /p99 op→durable +- ms$/)
  })
})
