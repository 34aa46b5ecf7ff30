/**
 * What `/metrics` promises an operator, checked on a real host (`Host.app` on a fresh PostgreSQL database, real
 * HTTP): every metric the README's Metrics tables name is exported, the runtime's counters at zero, before the host
 * has taken a single write — the tables are read from the README, so they cannot drift from the code — and the
 * process figures move. `RuntimeMetrics.LoopDelay` runs its monitor only after a busy window.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { withFreshHost } from "./freshHost.ts"
import { LoopDelay } from "../src/RuntimeMetrics.ts"

// ---- the README's tables ----

const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8")

/** A metric as the tables write it: a name, perhaps with one label set: `name` or `name{label="value",…}`. */
const metricPattern = /^[a-z_][a-z0-9_]*(?:\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})?$/

/** Every metric named in the "Metric…" column of a table of the README's "Metrics" section. */
const namedInReadme = (): ReadonlyArray<string> => {
  const start = readme.indexOf("\n## Metrics\n")
  assert.isAtLeast(start, 0, "the README has a Metrics section")
  const end = readme.indexOf("\n## ", start + 1)
  const names = new Set<string>()
  let column: number | undefined // of the table being read
  let tables = 0
  for (const line of readme.slice(start, end).split("\n")) {
    if (!line.startsWith("|")) {
      column = undefined
      continue
    }
    const cells = line.split("|").map((cell) => cell.trim())
    if (column === undefined) { // a header
      column = cells.findIndex((cell) => cell.startsWith("Metric"))
      assert.isAbove(column, 0, `a table of the Metrics section has a Metric column: ${line}`)
      tables++
      continue
    }
    for (const [, code] of (cells[column] ?? "").matchAll(/`([^`]+)`/g)) {
      if (metricPattern.test(code!)) names.add(code!)
    }
  }
  assert.strictEqual(tables, 3)
  return [...names]
}

// ---- a scrape ----

/** Sample lines of a Prometheus exposition: `name{labels}` → value. */
const parse = (text: string): ReadonlyMap<string, number> => {
  const samples = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const at = line.lastIndexOf(" ")
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return samples
}

/**
 * The samples that stand for a metric as the README names it: its own sample (counter, gauge, one label set), a
 * histogram's `_count`, or every series of a family when named without labels.
 */
const samplesOf = (samples: ReadonlyMap<string, number>, named: string): ReadonlyArray<[string, number]> => {
  const [name, labels] = named.includes("{") ? [named.slice(0, named.indexOf("{")), named.slice(named.indexOf("{"))] : [
    named,
    ""
  ]
  const found: Array<[string, number]> = []
  for (const [key, value] of samples) {
    const keyName = key.includes("{") ? key.slice(0, key.indexOf("{")) : key
    const keyLabels = key.includes("{") ? key.slice(key.indexOf("{")) : ""
    const histogram = keyName === `${name}_count`
    if (keyName !== name && !histogram) continue
    if (labels === "" || keyLabels === labels) found.push([key, value])
  }
  return found
}


const scrape = (address: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${address}/metrics`)
    assert.strictEqual(response.status, 200)
    return parse(await response.text())
  })

describe("GET /metrics on a freshly started host", () => {
  it.live("exports every metric the README's tables name, the runtime's at zero, before any write", () =>
    withFreshHost((address) =>
      Effect.gen(function*() {
      const samples = yield* scrape(address)
      const named = namedInReadme()
      assert.isAtLeast(named.length, 40, `the README's tables name the metrics: ${named.join(", ")}`)
      const missing = named.filter((name) => samplesOf(samples, name).length === 0)
      assert.deepStrictEqual(missing, [], "named in the README but not exported")
      for (const name of named.filter((name) => name.startsWith("sectors_") && /_total(\{|$)|_count$/.test(name))) {
        for (const [key, value] of samplesOf(samples, name)) assert.strictEqual(value, 0, `${key} before any write`)
      }
      for (const histogram of ["sectors_batch_ops", "sectors_batch_accumulation_seconds"]) {
        assert.strictEqual(samples.get(`${histogram}_count`), 0, `${histogram} before any write`)
      }
      // the process figures are read at the scrape, and move
      assert.isAbove(samples.get("process_cpu_seconds_total")!, 0)
      assert.isAbove(samples.get("process_resident_memory_bytes")!, 0)
      assert.isAbove(samples.get("nodejs_heap_size_used_bytes")!, 0)
      assert.isAbove(samples.get("process_start_time_seconds")!, Date.now() / 1000 - 3600)
      assert.isAbove(samples.get("nodejs_active_resources_total")!, 0)
      Array.from({ length: 200_000 }, (_, i) => ({ i })) // some work between scrapes
      const later = yield* scrape(address)
      assert.isAbove(later.get("process_cpu_seconds_total")!, samples.get("process_cpu_seconds_total")!)
      assert.isAbove(later.get("nodejs_eventloop_active_seconds_total")!, samples.get("nodejs_eventloop_active_seconds_total")!)
      })
    ))
})

describe("RuntimeMetrics.LoopDelay", () => {
  /** A loop whose utilisation over the next window is whatever the test says. */
  const scripted = () => {
    const loop = { idle: 0, active: 0 }
    return {
      loop,
      window: (utilisation: number) => {
        loop.active += 1000 * utilisation
        loop.idle += 1000 * (1 - utilisation)
      }
    }
  }

  it("does not monitor before it is read, nor after a window in which the loop was idle", () => {
    const { loop, window } = scripted()
    const delay = new LoopDelay({ utilisation: () => ({ ...loop }) })
    try {
      assert.isFalse(delay.monitoring, "a host that is never read is never woken by the monitor")
      window(0.5)
      delay.roll()
      assert.isTrue(delay.monitoring, "a busy window turns it on")
      window(0.002)
      assert.deepStrictEqual(delay.roll().p99, 0)
      assert.isFalse(delay.monitoring, "an idle window turns it off: the idle host is not woken again")
      window(0)
      delay.roll()
      assert.isFalse(delay.monitoring)
    } finally {
      delay.close()
    }
  })

  it("reports zeros for a window it did not monitor", () => {
    const { loop, window } = scripted()
    const delay = new LoopDelay({ utilisation: () => ({ ...loop }) })
    try {
      window(0)
      assert.deepStrictEqual(delay.roll(), { min: 0, max: 0, mean: 0, p50: 0, p90: 0, p99: 0 })
    } finally {
      delay.close()
    }
  })
})
