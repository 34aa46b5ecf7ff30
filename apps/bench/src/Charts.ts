/**
 * Charts for the benchmark report, rendered to SVG by Vega-Lite (compiled to Vega and rendered headless, no
 * browser). Each function takes plain rows and returns the SVG text.
 */
import * as vega from "vega"
import type { TopLevelSpec } from "vega-lite"
import * as vl from "vega-lite"

/** What every chart is given: a title, the rows, which field goes on each axis and what the y axis is called. */
interface Chart {
  readonly title: string
  readonly rows: ReadonlyArray<Record<string, string | number>>
  readonly x: string
  readonly y: string
  readonly yTitle: string
}

/** Renders one chart of `options` with `mark` and `encoding` to SVG. */
const render = (options: Chart, mark: object, encoding: object): Promise<string> => {
  const spec = {
    width: 480,
    height: 260,
    config: { font: "sans-serif" },
    title: options.title,
    data: { values: [...options.rows] },
    mark,
    encoding
  } as TopLevelSpec
  return new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" }).toSVG()
}

/** Bars of one value per category, optionally grouped by a second field (colour). */
export const bars = (options: Chart & {
  readonly color?: string | undefined
  readonly logScale?: boolean | undefined
}): Promise<string> =>
  render(options, { type: "bar", tooltip: true }, {
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
  })

/** Lines of a value over time, one per series. */
export const lines = (options: Chart & { readonly series: string }): Promise<string> =>
  render(options, { type: "line", point: false }, {
    x: { field: options.x, type: "quantitative", title: "seconds" },
    y: { field: options.y, type: "quantitative", title: options.yTitle },
    color: { field: options.series, type: "nominal" }
  })

/** Stacked bars: parts of a whole per category. */
export const stacked = (options: Chart & { readonly part: string }): Promise<string> =>
  render(options, { type: "bar", tooltip: true }, {
    x: { field: options.x, type: "nominal", sort: null, axis: { labelAngle: 0 } },
    y: { field: options.y, type: "quantitative", title: options.yTitle, stack: "normalize" },
    color: { field: options.part, type: "nominal" }
  })
