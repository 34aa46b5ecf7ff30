/**
 * `docs/grafana/sectors.json` is an importable Grafana dashboard whose every query names only metrics a host
 * exports: each panel's PromQL is reduced to the metric names it reads, and each must be a family of a freshly
 * started host's `GET /metrics` (a histogram's `_bucket`, `_sum` and `_count` read from their family). A renamed
 * metric, or a panel over one the host does not have, turns this red.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { withFreshHost } from "./freshHost.ts"

interface Target {
  readonly expr: string
  readonly datasource: { readonly uid: string }
}
interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly datasource?: { readonly uid: string }
  readonly targets?: ReadonlyArray<Target>
}

const dashboard = JSON.parse(
  readFileSync(new URL("../../../docs/grafana/sectors.json", import.meta.url), "utf8")
) as { readonly __inputs: ReadonlyArray<{ readonly name: string; readonly pluginId: string }>; readonly panels: ReadonlyArray<Panel> }

const queries = dashboard.panels.filter((panel) => panel.type !== "row")

// ---- PromQL → metric names ----

const keywords = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"])

/**
 * The metric names a PromQL expression reads: identifiers that are not functions (followed by `(`), keywords,
 * label names (inside `{…}` or a `by (…)` list), strings, range durations or numbers.
 */
const metricNames = (expr: string): ReadonlyArray<string> => {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, " ") // strings
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges, $__rate_interval
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ") // label lists
  const names = new Set<string>()
  for (const match of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\()?)/g)) {
    const [name, call] = [match[0], match[1]]
    if (call !== undefined || keywords.has(name)) continue
    names.add(name)
  }
  return [...names]
}

/** The families of a Prometheus exposition, from its `# TYPE` lines: name → type. */
const families = (text: string): ReadonlyMap<string, string> => {
  const found = new Map<string, string>()
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) found.set(name!, type!)
  return found
}

/** Whether `name` is read from an exported family: itself, or a histogram's (or summary's) series. */
const exported = (exposition: ReadonlyMap<string, string>, name: string): boolean => {
  if (exposition.has(name)) return true
  const series = /^(.+)_(bucket|sum|count)$/.exec(name)
  if (series === null) return false
  const type = exposition.get(series[1]!)
  return type === "histogram" || (type === "summary" && series[2] !== "bucket")
}

describe("metricNames", () => {
  it("reads metric names out of PromQL, not functions, labels, keywords or durations", () => {
    assert.deepStrictEqual(
      metricNames(`sum by (reason) (rate(sectors_flush_triggers_total{reason!="manual"}[$__rate_interval]))`),
      ["sectors_flush_triggers_total"]
    )
    assert.deepStrictEqual(
      metricNames(`histogram_quantile(0.99, sum by (le) (rate(sectors_persist_duration_seconds_bucket[5m])))`),
      ["sectors_persist_duration_seconds_bucket"]
    )
    assert.deepStrictEqual(metricNames(`time() - max(process_start_time_seconds)`), ["process_start_time_seconds"])
    assert.deepStrictEqual(metricNames(`100 * a_total / on (job) b_total`), ["a_total", "b_total"])
  })
})

describe("docs/grafana/sectors.json", () => {
  it("is an importable dashboard: a DS_PROMETHEUS input every query uses, unique panel ids, PromQL in every panel", () => {
    assert.deepStrictEqual(dashboard.__inputs.map((input) => [input.name, input.pluginId]), [["DS_PROMETHEUS", "prometheus"]])
    const ids = dashboard.panels.map((panel) => panel.id)
    assert.strictEqual(new Set(ids).size, ids.length, "panel ids are unique")
    assert.isAtLeast(queries.length, 15)
    for (const panel of queries) {
      assert.strictEqual(panel.datasource?.uid, "${DS_PROMETHEUS}", panel.title)
      assert.isAbove(panel.targets?.length ?? 0, 0, `${panel.title} has a query`)
      for (const target of panel.targets!) {
        assert.strictEqual(target.datasource.uid, "${DS_PROMETHEUS}", panel.title)
        assert.isAbove(metricNames(target.expr).length, 0, `${panel.title}: ${target.expr} reads a metric`)
      }
    }
  })

  
  it.live("queries only metrics a freshly started host exports", () =>
    withFreshHost((address) =>
      Effect.gen(function*() {
      const exposition = families(yield* Effect.promise(() => fetch(`${address}/metrics`).then((r) => r.text())))
      assert.isAtLeast(exposition.size, 40)
      const missing = queries.flatMap((panel) =>
        panel.targets!.flatMap((target) =>
          metricNames(target.expr).filter((name) => !exported(exposition, name)).map((name) => `${panel.title}: ${name}`)
        )
      )
      assert.deepStrictEqual(missing, [], "queried by the dashboard but not exported")
      })
    ))
})
