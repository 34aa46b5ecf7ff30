/**
 * Charts for the benchmark report, rendered to SVG by Vega-Lite (compiled to Vega and rendered headless, no
 * browser). Each function takes plain rows and returns the SVG text.
 */
import * as vega from "vega"
import type { TopLevelSpec } from "vega-lite"
import * as vl from "vega-lite"

const render = async (spec: TopLevelSpec): Promise<string> => {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" })
  return view.toSVG()
}

const base = { width: 480, height: 260, config: { font: "sans-serif" } } as const

/** Bars of one value per category, optionally grouped by a second field (colour). */
export const bars = (options: {
  readonly title: string
  readonly rows: ReadonlyArray<Record<string, string | number>>
  readonly x: string
  readonly y: string
  readonly yTitle: string
  readonly color?: string | undefined
  readonly logScale?: boolean | undefined
}): Promise<string> =>
  render({
    ...base,
    title: options.title,
    data: { values: [...options.rows] },
    mark: { type: "bar", tooltip: true },
    encoding: {
      x: { field: options.x, type: "nominal", sort: null, axis: { labelAngle: 0 } },
      y: {
        field: options.y,
        type: "quantitative",
        title: options.yTitle,
        ...(options.logScale ? { scale: { type: "log" } } : {})
      },
      ...(options.color === undefined
        ? {}
        : { color: { field: options.color, type: "nominal" }, xOffset: { field: options.color, type: "nominal" } })
    }
  } as TopLevelSpec)

/** Lines of a value over time, one per series. */
export const lines = (options: {
  readonly title: string
  readonly rows: ReadonlyArray<Record<string, string | number>>
  readonly x: string
  readonly y: string
  readonly yTitle: string
  readonly series: string
}): Promise<string> =>
  render({
    ...base,
    title: options.title,
    data: { values: [...options.rows] },
    mark: { type: "line", point: false },
    encoding: {
      x: { field: options.x, type: "quantitative", title: "seconds" },
      y: { field: options.y, type: "quantitative", title: options.yTitle },
      color: { field: options.series, type: "nominal" }
    }
  } as TopLevelSpec)

/** Stacked bars: parts of a whole per category. */
export const stacked = (options: {
  readonly title: string
  readonly rows: ReadonlyArray<Record<string, string | number>>
  readonly x: string
  readonly y: string
  readonly yTitle: string
  readonly part: string
}): Promise<string> =>
  render({
    ...base,
    title: options.title,
    data: { values: [...options.rows] },
    mark: { type: "bar", tooltip: true },
    encoding: {
      x: { field: options.x, type: "nominal", sort: null, axis: { labelAngle: 0 } },
      y: { field: options.y, type: "quantitative", title: options.yTitle, stack: "normalize" },
      color: { field: options.part, type: "nominal" }
    }
  } as TopLevelSpec)
