/**
 * Where a process's CPU time went, from a V8 `.cpuprofile` (what `node --cpu-prof` writes): the samples of a time
 * window merged into one call tree by frame, the functions with the most self time, the time by part of the code
 * (effect, Node, our host, core, the sink…), and a flame graph of the tree rendered to SVG here — no tool to download.
 *
 * Sample times in a `.cpuprofile` are the monotonic clock in microseconds, the clock of `process.hrtime`, the same in
 * every process of the machine: the bench slices the host's profile to its measured window with its own clock.
 */

/** A `.cpuprofile` as V8 writes it (the fields used here). */
export interface Raw {
  readonly nodes: ReadonlyArray<{
    readonly id: number
    readonly callFrame: {
      readonly functionName: string
      readonly url: string
      readonly lineNumber: number
      readonly columnNumber: number
    }
    readonly children?: ReadonlyArray<number> | undefined
  }>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** One frame of the merged call tree: samples in it (`self`) and under it (`total`). */
export interface Frame {
  readonly name: string
  readonly part: string
  self: number
  total: number
  readonly children: Array<Frame>
}

/** What a window of a profile says. */
export interface Summary {
  /** Samples in the window, idle ones included, and the sampling interval in ms (mean). */
  readonly samples: number
  readonly intervalMillis: number
  /** Samples by part of the code (`parts`), self time; `(idle)`, `(garbage collector)`, `(program)` on their own. */
  readonly byPart: ReadonlyArray<{ readonly part: string; readonly samples: number }>
  /** The functions with the most self time, all calls summed. */
  readonly topSelf: ReadonlyArray<{ readonly name: string; readonly part: string; readonly samples: number }>
  /** Named functions with the most total time (inclusive), each counted once per sample. */
  readonly topTotal: ReadonlyArray<{ readonly name: string; readonly part: string; readonly samples: number }>
  /** The merged call tree without `(idle)`, frames under `minShare` of it dropped. */
  readonly tree: Frame
}

/** Which part of the code a script URL belongs to. */
export const partOf = (url: string, functionName: string): string => {
  if (url === "") {
    return functionName === "(idle)" || functionName === "(garbage collector)" || functionName === "(program)"
      ? functionName
      : "native"
  }
  if (url.startsWith("node:")) return "node"
  if (url.includes("/node_modules/effect/")) return "effect"
  if (url.includes("/node_modules/@effect/platform-node")) return "@effect/platform-node"
  if (url.includes("/node_modules/@effect/sql")) return "@effect/sql-pg"
  if (url.includes("/apps/sector-host/")) return "sector-host"
  if (url.includes("/packages/core/")) return "core"
  if (url.includes("/packages/sink-pg/")) return "sink-pg"
  if (url.includes("/node_modules/")) {
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
    return match?.[1] ?? "node_modules"
  }
  return "other"
}

const frameName = (frame: Raw["nodes"][number]["callFrame"]) => {
  const file = frame.url.replace(/^.*\/node_modules\//, "").replace(/^.*\/(apps|packages)\//, "$1/").replace(
    /^file:\/\//,
    ""
  )
  const fn = frame.functionName === "" ? "(anonymous)" : frame.functionName
  return file === "" ? fn : `${fn} ${file}:${frame.lineNumber + 1}`
}

/**
 * Summarises the samples of `raw` taken between `from` and `to` (monotonic µs; the whole profile by default):
 * `top` functions each, frames under `minShare` of the busy samples dropped from the tree.
 */
export const summarize = (
  raw: Raw,
  options: { readonly from?: number; readonly to?: number; readonly top?: number; readonly minShare?: number } = {}
): Summary => {
  const from = options.from ?? -Infinity
  const to = options.to ?? Infinity
  const hits = new Map<number, number>()
  let time = raw.startTime
  let samples = 0
  for (let i = 0; i < raw.samples.length; i++) {
    time += raw.timeDeltas[i]!
    if (time < from || time > to) continue
    samples++
    hits.set(raw.samples[i]!, (hits.get(raw.samples[i]!) ?? 0) + 1)
  }
  const byId = new Map(raw.nodes.map((node) => [node.id, node]))
  const rootNode = raw.nodes[0]!
  const root: Frame = { name: "all", part: "(root)", self: 0, total: 0, children: [] }
  const selfByName = new Map<string, { part: string; samples: number }>()
  const totalByName = new Map<string, { part: string; samples: number }>()
  const byPart = new Map<string, number>()

  // depth first over the raw tree, merging children with the same frame name; `onPath` counts each name once
  const onPath = new Map<string, number>()
  const visit = (id: number, into: Frame): number => {
    const node = byId.get(id)!
    const name = frameName(node.callFrame)
    const part = partOf(node.callFrame.url, node.callFrame.functionName)
    if (node.callFrame.functionName === "(idle)") return 0
    let frame = into.children.find((child) => child.name === name)
    if (frame === undefined) into.children.push(frame = { name, part, self: 0, total: 0, children: [] })
    const self = hits.get(id) ?? 0
    onPath.set(name, (onPath.get(name) ?? 0) + 1)
    let total = self
    for (const child of node.children ?? []) total += visit(child, frame)
    onPath.set(name, onPath.get(name)! - 1)
    frame.self += self
    frame.total += total
    if (self > 0) {
      const entry = selfByName.get(name) ?? { part, samples: 0 }
      entry.samples += self
      selfByName.set(name, entry)
      byPart.set(part, (byPart.get(part) ?? 0) + self)
    }
    // inclusive time counted at the outermost call only (recursion would count it twice)
    if (onPath.get(name) === 0 && total > 0 && node.callFrame.functionName !== "") {
      const entry = totalByName.get(name) ?? { part, samples: 0 }
      entry.samples += total
      totalByName.set(name, entry)
    }
    return total
  }
  for (const child of rootNode.children ?? []) root.total += visit(child, root)
  byPart.set("(idle)", samples - root.total)

  const minSamples = (options.minShare ?? 0.001) * root.total
  const prune = (frame: Frame) => {
    frame.children.splice(0, frame.children.length, ...frame.children.filter((c) => c.total >= minSamples))
    frame.children.sort((a, b) => a.name.localeCompare(b.name))
    frame.children.forEach(prune)
  }
  prune(root)
  const top = options.top ?? 25
  const sorted = (map: Map<string, { part: string; samples: number }>) =>
    [...map].map(([name, { part, samples }]) => ({ name, part, samples })).sort((a, b) => b.samples - a.samples)
      .slice(0, top)
  const interval = samples === 0 ? 0 : (Math.min(to, raw.endTime) - Math.max(from, raw.startTime)) / samples / 1000
  return {
    samples,
    intervalMillis: interval,
    byPart: [...byPart].map(([part, n]) => ({ part, samples: n })).sort((a, b) => b.samples - a.samples),
    topSelf: sorted(selfByName),
    topTotal: sorted(totalByName),
    tree: root
  }
}

/** The colour of a part in the flame graph. */
const colours: Record<string, string> = {
  effect: "#f2a65a",
  "@effect/platform-node": "#f7c873",
  node: "#8fb8de",
  native: "#b5c7d3",
  "sector-host": "#77c18a",
  core: "#a3d977",
  "sink-pg": "#c9a0dc",
  "@effect/sql-pg": "#d8b5e6",
  "(garbage collector)": "#e57373",
  "(program)": "#cfcfcf"
}

const escape = (text: string) =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("\"", "&quot;")

/**
 * A flame graph of `tree` as SVG: the root at the bottom, each frame as wide as its share of the busy samples, its
 * callees above it, coloured by part of the code (the legend says which); hovering a frame shows its name and share.
 */
export const flameGraph = (tree: Frame, title: string): string => {
  const width = 1200
  const rowHeight = 16
  const depthOf = (frame: Frame): number => 1 + Math.max(0, ...frame.children.map(depthOf))
  const depth = depthOf(tree)
  const legendHeight = 24
  const top = 28
  const height = top + depth * rowHeight + legendHeight + 8
  const rects: Array<string> = []
  const draw = (frame: Frame, x: number, level: number) => {
    const w = (frame.total / tree.total) * width
    if (w < 0.3) return
    const y = top + (depth - 1 - level) * rowHeight
    const share = `${((frame.total / tree.total) * 100).toFixed(2)} %`
    const label = w > 24 ? escape(frame.name.slice(0, Math.floor((w - 4) / 6.2))) : ""
    rects.push(
      `<g><title>${escape(frame.name)} (${frame.part}): ${share} total, ${
        ((frame.self / tree.total) * 100).toFixed(2)
      } % self</title><rect x="${x.toFixed(2)}" y="${y}" width="${Math.max(0.1, w - 0.3).toFixed(2)}" height="${
        rowHeight - 1
      }" fill="${colours[frame.part] ?? "#dddddd"}"/>${
        label === "" ? "" : `<text x="${(x + 2).toFixed(2)}" y="${y + 11.5}">${label}</text>`
      }</g>`
    )
    let childX = x
    for (const child of frame.children) {
      draw(child, childX, level + 1)
      childX += (child.total / tree.total) * width
    }
  }
  draw(tree, 0, 0)
  const legend = Object.entries(colours).map(([part, colour], i) =>
    `<rect x="${i * 120}" y="${height - legendHeight}" width="12" height="12" fill="${colour}"/>` +
    `<text x="${i * 120 + 16}" y="${height - legendHeight + 10}">${escape(part)}</text>`
  )
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="monospace" font-size="10">\n<text x="0" y="16" font-size="13">${escape(title)}</text>\n` +
    `${rects.join("\n")}\n${legend.join("\n")}\n</svg>\n`
}
