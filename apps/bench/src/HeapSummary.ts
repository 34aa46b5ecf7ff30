/**
 * Where the bytes of a V8 heap snapshot go: reads a `.heapsnapshot` file (streamed, so that snapshots of a few GiB
 * fit: the node and edge arrays go into typed arrays, only the string table is parsed as JSON) and sums the self
 * size and count of its nodes by kind. `diff` of two summaries, divided by the sectors created between them, is the
 * `footprint` suite's per-sector table.
 *
 * A kind is the node's constructor name for objects (`Map`, `FiberImpl`, `Deferred`…); a plain object (`Object`,
 * which is what effect's `Object.create(Proto)` values look like) is told apart by its first own property names
 * (`Object {_tag, fiber}`); a closure by its function's name (`closure submit`); everything else by V8's node type
 * and name (`(system) Context`, `(array) (object elements)`, `(code)`…). Self sizes add up to the heap exactly; a
 * retained size per kind would count the same bytes under several kinds.
 */
import * as fs from "node:fs"

/** Self bytes and count of one kind of node. */
export interface Kind {
  readonly kind: string
  readonly bytes: number
  readonly count: number
}

/** A snapshot's kinds. */
export type Summary = ReadonlyMap<string, { bytes: number; count: number }>

/** Reads the numbers of the JSON array that starts after `key` into a growable Float64Array. */
class Numbers {
  values = new Float64Array(1 << 20)
  length = 0
  push(value: number) {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.length++] = value
  }
}

/** The field layout of a snapshot's node and edge arrays. */
interface Meta {
  readonly node_fields: ReadonlyArray<string>
  readonly node_types: ReadonlyArray<unknown>
  readonly edge_fields: ReadonlyArray<string>
  readonly edge_types: ReadonlyArray<unknown>
}

/** Parses the snapshot at `file`: meta, nodes, edges and strings. */
const parse = async (file: string) => {
  const nodes = new Numbers()
  const edges = new Numbers()
  let metaText = ""
  let pending = ""
  let tail: Array<Buffer> = []
  let section: "head" | "nodes" | "edges" | "between" | "tail" = "head"
  let current = 0
  let inNumber = false
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 22 }) as AsyncIterable<Buffer>) {
    let i = 0
    while (i < chunk.length) {
      if (section === "head" || section === "between") {
        // short text up to the next array of numbers (latin1: one character a byte, so offsets stay byte offsets)
        const marker = section === "head" ? "\"nodes\":[" : "\"edges\":["
        const text = pending + chunk.toString("latin1", i)
        const at = text.indexOf(marker)
        if (at < 0) {
          pending = text
          i = chunk.length
          break
        }
        if (section === "head") metaText = text.slice(0, at)
        i += at + marker.length - pending.length
        pending = ""
        section = section === "head" ? "nodes" : "edges"
        continue
      }
      if (section === "nodes" || section === "edges") {
        const target = section === "nodes" ? nodes : edges
        for (; i < chunk.length; i++) {
          const c = chunk[i]!
          if (c >= 48 && c <= 57) {
            current = current * 10 + (c - 48)
            inNumber = true
          } else {
            if (inNumber) target.push(current)
            current = 0
            inNumber = false
            if (c === 93) { // ]
              i++
              section = section === "nodes" ? "between" : "tail"
              break
            }
          }
        }
        continue
      }
      tail.push(chunk.subarray(i))
      i = chunk.length
    }
  }
  // metaText: `{"snapshot":{"meta":{…},"node_count":…},`
  const snapshot = metaText.slice(metaText.indexOf("{") + 1).replace(/^\s*"snapshot"\s*:\s*/, "").replace(/,\s*$/, "")
  const meta = (JSON.parse(snapshot) as { readonly meta: Meta }).meta
  const rest = Buffer.concat(tail).toString("utf8")
  const stringsAt = rest.indexOf("\"strings\":[")
  const stringsEnd = rest.lastIndexOf("]")
  const strings = JSON.parse(rest.slice(stringsAt + "\"strings\":".length, stringsEnd + 1)) as Array<string>
  const locationsAt = rest.indexOf("\"locations\":[")
  const locations = locationsAt < 0
    ? []
    : JSON.parse(rest.slice(locationsAt + "\"locations\":".length, rest.indexOf("]", locationsAt) + 1)) as Array<number>
  tail = []
  return { meta, locations, nodes: nodes.values.subarray(0, nodes.length), edges: edges.values.subarray(0, edges.length), strings }
}

/**
 * A set of nodes whose retained size is asked for: the nodes whose kind it `matches`, together (e.g. every
 * `FiberImpl`: what would go if no fiber existed).
 */
export interface Group {
  readonly name: string
  readonly matches: (kind: string) => boolean
}

/**
 * A snapshot's kinds, the same bytes by V8 node category (objects, closures, contexts, arrays…), and per group the
 * bytes only reachable through its nodes (as a count: `bytes`, and how many of its nodes: `count`).
 */
export interface Summaries {
  readonly kinds: Summary
  readonly categories: Summary
  readonly retained: Summary
}

const add = (into: Map<string, { bytes: number; count: number }>, key: string, bytes: number) => {
  const entry = into.get(key)
  if (entry === undefined) into.set(key, { bytes, count: 1 })
  else {
    entry.bytes += bytes
    entry.count++
  }
}

/** Sums the self size and count of every node of the snapshot at `file` by kind and by category. */
export const summarize = async (file: string, groups: ReadonlyArray<Group> = []): Promise<Summaries> => {
  const { edges, locations, meta, nodes, strings } = await parse(file)
  const nodeFields = meta.node_fields.length
  const edgeFields = meta.edge_fields.length
  const nodeTypes = meta.node_types[0] as Array<string>
  const edgeTypes = meta.edge_types[0] as Array<string>
  const typeAt = meta.node_fields.indexOf("type")
  const nameAt = meta.node_fields.indexOf("name")
  const sizeAt = meta.node_fields.indexOf("self_size")
  const edgeCountAt = meta.node_fields.indexOf("edge_count")
  const edgeTypeAt = meta.edge_fields.indexOf("type")
  const edgeNameAt = meta.edge_fields.indexOf("name_or_index")
  const edgeToAt = meta.edge_fields.indexOf("to_node")
  const property = edgeTypes.indexOf("property")
  const contextVariable = edgeTypes.indexOf("context")
  const internal = edgeTypes.indexOf("internal")
  const weak = edgeTypes.indexOf("weak")
  const count = nodes.length / nodeFields
  // where each node's edges start, and each node's first strong retainer (for kinds that say nothing by themselves)
  const firstEdge = new Float64Array(count + 1)
  for (let i = 0; i < count; i++) firstEdge[i + 1] = firstEdge[i]! + nodes[i * nodeFields + edgeCountAt]! * edgeFields
  const retainer = new Int32Array(count).fill(-1)
  const retainerEdge = new Int32Array(count).fill(-1)
  for (let i = 0; i < count; i++) {
    for (let e = firstEdge[i]!; e < firstEdge[i + 1]!; e += edgeFields) {
      const to = edges[e + edgeToAt]! / nodeFields
      const edgeType = edges[e + edgeTypeAt]!
      if (retainer[to] === -1 && edgeType !== weak) {
        retainer[to] = i
        retainerEdge[to] = edgeType === property || edgeType === contextVariable || edgeType === internal
          ? edges[e + edgeNameAt]!
          : -1
      }
    }
  }
  const lineOf = new Map<number, number>()
  for (let l = 0; l < locations.length; l += 4) lineOf.set(locations[l]! / nodeFields, locations[l + 2]! + 1)
  const edgeTo = (node: number, name: string) => {
    for (let e = firstEdge[node]!; e < firstEdge[node + 1]!; e += edgeFields) {
      if (strings[edges[e + edgeNameAt]!] === name && edges[e + edgeTypeAt] === internal) return edges[e + edgeToAt]! / nodeFields
    }
    return -1
  }
  const names = (node: number, edgeType: number) => {
    const out: Array<string> = []
    for (let e = firstEdge[node]!; e < firstEdge[node + 1]! && out.length < 3; e += edgeFields) {
      if (edges[e + edgeTypeAt] !== edgeType) continue
      const name = strings[edges[e + edgeNameAt]!] ?? "?"
      if (name !== "__proto__") out.push(name)
    }
    return out.join(", ")
  }
  /** What a node is, from itself alone. */
  const ownKind = (node: number): string => {
    const type = nodeTypes[nodes[node * nodeFields + typeAt]!]!
    const name = strings[nodes[node * nodeFields + nameAt]!] ?? ""
    if (type === "object" && name === "Object") return `Object {${names(node, property)}}`
    if (type === "object" && name === "system / Context") return `Context {${names(node, contextVariable)}}`
    if (type === "object") return name
    if (type === "closure") {
      const shared = edgeTo(node, "shared")
      const script = shared < 0 ? -1 : edgeTo(shared, "script")
      const file = script < 0 ? "?" : (strings[nodes[script * nodeFields + nameAt]!] ?? "?").split("/").slice(-2).join("/")
      return `closure ${name === "" ? "(anonymous)" : name} (${file}:${lineOf.get(node) ?? "?"})`
    }
    if (type === "string" || type === "concatenated string" || type === "sliced string") return "(string)"
    if (type === "number" || type === "heap number") return "(number)"
    return `(${type}) ${name.length > 40 ? name.slice(0, 40) + "…" : name}`
  }
  const kinds = new Map<string, { bytes: number; count: number }>()
  const categories = new Map<string, { bytes: number; count: number }>()
  const members = groups.map(() => new Uint8Array(count))
  for (let node = 0; node < count; node++) {
    const type = nodeTypes[nodes[node * nodeFields + typeAt]!]!
    const name = strings[nodes[node * nodeFields + nameAt]!] ?? ""
    const size = nodes[node * nodeFields + sizeAt]!
    let kind = ownKind(node)
    // arrays, hidden classes and other internals: named after what holds them
    if (type === "array" || type === "hidden" || type === "object shape" || type === "native") {
      const holder = retainer[node]!
      const edge = retainerEdge[node]!
      if (holder >= 0) kind += ` ← ${ownKind(holder)}${edge >= 0 ? `.${strings[edge]}` : "[]"}`
    }
    add(kinds, kind, size)
    for (let g = 0; g < groups.length; g++) if (groups[g]!.matches(kind)) members[g]![node] = 1
    add(
      categories,
      type === "object"
        ? name === "system / Context" ? "closure contexts" : "objects"
        : type === "closure"
        ? `closures in ${kind.slice(kind.lastIndexOf("(") + 1, kind.lastIndexOf(":"))}`
        : type === "array"
        ? "arrays (elements, properties)"
        : type === "object shape"
        ? "hidden classes (maps)"
        : type === "code"
        ? "code (bytecode, feedback)"
        : type,
      size
    )
  }
  /** Bytes reachable from the root (strong edges), not passing through `avoid`'s nodes. */
  const reachable = (avoid: Uint8Array | undefined) => {
    const seen = new Uint8Array(count)
    const stack = new Int32Array(count)
    let top = 0
    let bytes = 0
    stack[top++] = 0
    seen[0] = 1
    while (top > 0) {
      const node = stack[--top]!
      bytes += nodes[node * nodeFields + sizeAt]!
      for (let e = firstEdge[node]!; e < firstEdge[node + 1]!; e += edgeFields) {
        if (edges[e + edgeTypeAt] === weak) continue
        const to = edges[e + edgeToAt]! / nodeFields
        if (seen[to] === 1 || (avoid !== undefined && avoid[to] === 1)) continue
        seen[to] = 1
        stack[top++] = to
      }
    }
    return bytes
  }
  const retained = new Map<string, { bytes: number; count: number }>()
  if (groups.length > 0) {
    const all = reachable(undefined)
    groups.forEach((group, g) => {
      retained.set(group.name, { bytes: all - reachable(members[g]), count: members[g]!.reduce((a, b) => a + b, 0) })
    })
  }
  return { kinds, categories, retained }
}

/** What `after` holds more than `before`, per `per` (e.g. sectors), largest first. */
export const diff = (before: Summary, after: Summary, per: number): ReadonlyArray<Kind> => {
  const kinds = new Set([...before.keys(), ...after.keys()])
  const out: Array<Kind> = []
  for (const kind of kinds) {
    const a = after.get(kind) ?? { bytes: 0, count: 0 }
    const b = before.get(kind) ?? { bytes: 0, count: 0 }
    out.push({ kind, bytes: (a.bytes - b.bytes) / per, count: (a.count - b.count) / per })
  }
  return out.sort((x, y) => y.bytes - x.bytes)
}
