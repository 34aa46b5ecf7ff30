/**
 * A sector's state as rows: per entity, its components (data + the seq of the op that wrote it) and its authority
 * entries (worker + seq). The sector keeps one in memory and applies every accepted op to it first; sinks store
 * the same rows. `fold` — apply ops in seq order — is the reference model every test compares the database with:
 * whatever the batching, collapsing, retries or restarts, what a sink holds after a clean shutdown must equal
 * `toRows(fold(ops))`.
 */
import { absurd } from "effect/Function"
import type * as Batch from "./Batch.ts"
import type * as Op from "./Op.ts"

/** A stored component. */
export interface ComponentRow {
  readonly entity: number
  readonly component: string
  readonly data: Op.Data
  readonly seq: number
}

/** A stored authority entry. */
export interface AuthorityRow {
  readonly entity: number
  readonly component: string
  readonly worker: string
  readonly seq: number
}

/** Every row of a sector, sorted by (entity, component). */
export interface Rows {
  readonly components: ReadonlyArray<ComponentRow>
  readonly authority: ReadonlyArray<AuthorityRow>
}

interface Cell<A> {
  readonly value: A
  readonly seq: number
}

/** One entity in memory. Its authority map is made on its first entry: most entities never have one. */
export interface EntityState {
  readonly components: Map<string, Cell<Op.Data>>
  authority: Map<string, Cell<string>> | undefined
}

const noAuthority: ReadonlyMap<string, Cell<string>> = new Map()

/** An entity's authority entries (none: an empty map shared by every entity without any). */
const authorityOf = (found: EntityState): ReadonlyMap<string, Cell<string>> => found.authority ?? noAuthority

/** Sets an authority entry, making the entity's map on its first one. */
const setAuthority = (found: EntityState, component: string, cell: Cell<string>) => {
  if (found.authority === undefined) found.authority = new Map()
  found.authority.set(component, cell)
}

/** A sector's entities in memory. Mutable: owned by one sector. */
export interface SectorState {
  readonly entities: Map<number, EntityState>
}

/** What reading an entity returns: its components by name, its authority by component, its latest seq. */
export interface EntityView {
  readonly entity: number
  readonly components: Readonly<Record<string, Op.Data>>
  readonly authority: Readonly<Record<string, string>>
  /** The highest seq among its stored components and authority entries. */
  readonly seq: number
}

/** An empty state. */
export const make = (): SectorState => ({ entities: new Map() })

const entityOf = (state: SectorState, entity: number): EntityState => {
  let found = state.entities.get(entity)
  if (found === undefined) {
    found = { components: new Map(), authority: undefined }
    state.entities.set(entity, found)
  }
  return found
}

const dropIfEmpty = (state: SectorState, entity: number, found: EntityState) => {
  if (found.components.size === 0 && authorityOf(found).size === 0) state.entities.delete(entity)
}

/** Applies one op with its seq (mutates `state`). */
export const apply = (state: SectorState, op: Op.Op, seq: number): void => {
  switch (op.type) {
    case "set": {
      entityOf(state, op.entity).components.set(op.component, { value: op.data, seq })
      return
    }
    case "remove": {
      const found = state.entities.get(op.entity)
      if (found === undefined) return
      found.components.delete(op.component)
      dropIfEmpty(state, op.entity, found)
      return
    }
    case "delete": {
      state.entities.delete(op.entity)
      return
    }
    case "authority": {
      if (op.worker === null) {
        const found = state.entities.get(op.entity)
        if (found === undefined) return
        found.authority?.delete(op.component)
        dropIfEmpty(state, op.entity, found)
      } else {
        setAuthority(entityOf(state, op.entity), op.component, { value: op.worker, seq })
      }
      return
    }
    default:
      return absurd(op)
  }
}

/**
 * Applies collapsed batch entries the way a sink does, with the same seq guards: a row is only overwritten or
 * removed by an entry with a higher seq. Used to lay pending (not yet durable) changes over state loaded from a
 * sink, and by the memory sink. `onChange` hears every entry that changed something.
 */
export const applyEntries = (
  state: SectorState,
  entries: ReadonlyArray<Batch.Entry>,
  onChange?: (entry: Batch.Entry) => void
): void => {
  for (const entry of entries) {
    let changed = false
    switch (entry._tag) {
      case "Delete": {
        const found = state.entities.get(entry.entity)
        if (found === undefined) break
        for (const [name, cell] of found.components) {
          if (cell.seq < entry.seq) changed = found.components.delete(name) || changed
        }
        for (const [name, cell] of authorityOf(found)) {
          if (cell.seq < entry.seq) changed = found.authority!.delete(name) || changed
        }
        dropIfEmpty(state, entry.entity, found)
        break
      }
      case "Remove": {
        const found = state.entities.get(entry.entity)
        const cell = found?.components.get(entry.component)
        if (found !== undefined && cell !== undefined && cell.seq < entry.seq) {
          changed = found.components.delete(entry.component)
          dropIfEmpty(state, entry.entity, found)
        }
        break
      }
      case "Upsert": {
        const cell = state.entities.get(entry.entity)?.components.get(entry.component)
        if (cell === undefined || cell.seq < entry.seq) {
          entityOf(state, entry.entity).components.set(entry.component, { value: entry.data, seq: entry.seq })
          changed = true
        }
        break
      }
      case "Authority": {
        const found = state.entities.get(entry.entity)
        const cell = found?.authority?.get(entry.component)
        if (entry.worker === null) {
          if (found !== undefined && cell !== undefined && cell.seq < entry.seq) {
            changed = found.authority!.delete(entry.component)
            dropIfEmpty(state, entry.entity, found)
          }
        } else if (cell === undefined || cell.seq < entry.seq) {
          setAuthority(entityOf(state, entry.entity), entry.component, { value: entry.worker, seq: entry.seq })
          changed = true
        }
        break
      }
      default:
        return absurd(entry)
    }
    if (changed) onChange?.(entry)
  }
}

/** A state holding exactly `rows` (what a sink loaded). */
export const fromRows = (rows: Rows): SectorState => {
  const state = make()
  for (const row of rows.components) {
    entityOf(state, row.entity).components.set(row.component, { value: row.data, seq: row.seq })
  }
  for (const row of rows.authority) {
    setAuthority(entityOf(state, row.entity), row.component, { value: row.worker, seq: row.seq })
  }
  return state
}

const byKey = (a: { entity: number; component: string }, b: { entity: number; component: string }) =>
  a.entity - b.entity || (a.component < b.component ? -1 : a.component > b.component ? 1 : 0)

/** Every row of `state`, sorted by (entity, component): the form sinks and tests compare. */
export const toRows = (state: SectorState): Rows => {
  const components: Array<ComponentRow> = []
  const authority: Array<AuthorityRow> = []
  for (const [entity, found] of state.entities) {
    for (const [component, cell] of found.components) {
      components.push({ entity, component, data: cell.value, seq: cell.seq })
    }
    for (const [component, cell] of authorityOf(found)) {
      authority.push({ entity, component, worker: cell.value, seq: cell.seq })
    }
  }
  return { components: components.sort(byKey), authority: authority.sort(byKey) }
}

/** Sorts rows the way `toRows` does (for comparing rows read elsewhere). */
export const sortRows = (rows: Rows): Rows => ({
  components: [...rows.components].sort(byKey),
  authority: [...rows.authority].sort(byKey)
})

/** The highest seq of any row (0 for none). */
export const maxSeq = (state: SectorState): number => {
  let max = 0
  for (const found of state.entities.values()) {
    for (const cell of found.components.values()) if (cell.seq > max) max = cell.seq
    for (const cell of authorityOf(found).values()) if (cell.seq > max) max = cell.seq
  }
  return max
}

/** Sets an own property, also one named `__proto__` (plain assignment would set the prototype instead). */
const define = <A>(record: Record<string, A>, name: string, value: A) =>
  Object.defineProperty(record, name, { value, enumerable: true, writable: true, configurable: true })

/** Reads one entity; undefined when it has no components and no authority. */
export const view = (state: SectorState, entity: number): EntityView | undefined => {
  const found = state.entities.get(entity)
  if (found === undefined) return undefined
  const components: Record<string, Op.Data> = {}
  const authority: Record<string, string> = {}
  let seq = 0
  for (const [name, cell] of found.components) {
    define(components, name, cell.value)
    if (cell.seq > seq) seq = cell.seq
  }
  for (const [name, cell] of authorityOf(found)) {
    define(authority, name, cell.value)
    if (cell.seq > seq) seq = cell.seq
  }
  return { entity, components, authority, seq }
}

/** Number of entities held. */
export const size = (state: SectorState): number => state.entities.size

/** The reference model: applies `ops` in order, the i-th with seq `firstSeq + i`. */
export const fold = (ops: Iterable<Op.Op>, firstSeq = 1, state: SectorState = make()): SectorState => {
  let seq = firstSeq
  for (const op of ops) apply(state, op, seq++)
  return state
}
