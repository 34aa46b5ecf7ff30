/**
 * Checks a database against what a load `History` says was acknowledged: for every sector, the durable rows —
 * read straight from PostgreSQL, seqs included — must equal the reference fold of its ops 1 … persisted_seq, and
 * nothing acknowledged (or, after a crash, acknowledged as durable) may be missing. Also settles a history after a
 * host died: an unanswered request is counted in when the database shows it, and acknowledged-but-not-durable ops
 * that a crash lost are dropped (and reported with how long they had been acknowledged).
 */
import { SectorState } from "@sectors/core"
import { isDeepStrictEqual } from "node:util"
import postgres from "postgres"
import { call } from "./HostProcess.ts"
import type { History } from "./Load.ts"

/** The durable state of one sector. */
export interface DurableSector {
  readonly persistedSeq: number
  readonly rows: SectorState.Rows
}

/** Reads sectors straight from the database at `url`. */
export const readSectors = async (url: string, ids: Iterable<number>): Promise<Map<number, DurableSector>> => {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    const out = new Map<number, DurableSector>()
    for (const id of ids) {
      const [sector] = await sql<Array<{ persisted_seq: string }>>`SELECT persisted_seq FROM sector_watermarks WHERE sector_id = ${id}`
      const components = await sql<Array<{ entity_id: string; component: string; data: any; seq: string }>>`
        SELECT entity_id, component, data, seq FROM entity_components WHERE sector_id = ${id}`
      const authority = await sql<Array<{ entity_id: string; component: string; worker: string; seq: string }>>`
        SELECT entity_id, component, worker, seq FROM entity_authority WHERE sector_id = ${id}`
      out.set(id, {
        persistedSeq: sector === undefined ? 0 : Number(sector.persisted_seq),
        rows: SectorState.sortRows({
          components: components.map((r) => ({ entity: Number(r.entity_id), component: r.component, data: r.data, seq: Number(r.seq) })),
          authority: authority.map((r) => ({ entity: Number(r.entity_id), component: r.component, worker: r.worker, seq: Number(r.seq) }))
        })
      })
    }
    return out
  } finally {
    await sql.end()
  }
}

/** What settling a history after a host died found. */
export interface Settled {
  /** Acknowledged ops the crash lost (not durable), with how long before `diedAt` they had been acknowledged. */
  readonly lost: ReadonlyArray<{ readonly sector: number; readonly ops: number; readonly ackedMsBeforeDeath: number }>
  /** Ops acknowledged as durable that the database does not have (must be empty). */
  readonly durableMissing: ReadonlyArray<{ readonly sector: number; readonly lastSeq: number; readonly persistedSeq: number }>
}

/** Brings `history` in line with the database after a host died at `diedAt` (Date.now()). */
export const settle = async (url: string, history: History, diedAt: number): Promise<Settled> => {
  const durable = await readSectors(url, history.sectors.keys())
  const lost: Array<Settled["lost"][number]> = []
  const durableMissing: Array<Settled["durableMissing"][number]> = []
  for (const [id, state] of history.sectors) {
    const persisted = durable.get(id)!.persistedSeq
    const next = history.nextSeq(id)
    if (state.uncertain !== undefined) {
      if (persisted >= next) {
        const count = Math.min(state.uncertain.length, persisted - next + 1)
        state.acked.push({ ops: state.uncertain.slice(0, count), firstSeq: next, lastSeq: next + count - 1, durable: true, at: diedAt })
      }
      state.uncertain = undefined
    }
    // keep what is durable; what lies beyond the watermark was lost with the process
    const kept = []
    for (const acked of state.acked) {
      if (acked.lastSeq <= persisted) kept.push(acked)
      else {
        if (acked.durable) durableMissing.push({ sector: id, lastSeq: acked.lastSeq, persistedSeq: persisted })
        const keep = Math.max(0, persisted - acked.firstSeq + 1)
        if (keep > 0) kept.push({ ...acked, ops: acked.ops.slice(0, keep), lastSeq: persisted })
        lost.push({ sector: id, ops: acked.ops.length - keep, ackedMsBeforeDeath: diedAt - acked.at })
      }
    }
    state.acked.splice(0, state.acked.length, ...kept)
  }
  return { lost, durableMissing }
}

/** Acknowledged ops whose seqs a later acknowledgement of the same sector was given again. */
export interface ReusedSeqs {
  readonly sector: number
  readonly firstSeq: number
  readonly lastSeq: number
  /** Whether any of the ops lost was acknowledged as durable. */
  readonly durable: boolean
}

/**
 * Seqs acknowledged twice: a later acknowledgement of a sector starting at or below one already acknowledged means
 * the ops acknowledged under those seqs were lost — the sector's next owner loaded what was durable and counted on
 * from there. Read from the history alone, so it finds a loss even after later writes have moved the database past it.
 */
export const reusedSeqs = (history: History): Array<ReusedSeqs> => {
  const found: Array<ReusedSeqs> = []
  for (const [sector, { acked }] of history.sectors) {
    for (let i = 1; i < acked.length; i++) {
      const firstSeq = acked[i]!.firstSeq
      const earlier = acked.slice(0, i).filter((a) => a.lastSeq >= firstSeq)
      if (earlier.length === 0) continue
      const lastSeq = Math.max(...earlier.map((a) => a.lastSeq))
      if (found.some((r) => r.sector === sector && r.firstSeq <= firstSeq && r.lastSeq >= lastSeq)) continue
      found.push({ sector, firstSeq, lastSeq, durable: earlier.some((a) => a.durable) })
    }
  }
  return found
}

/** A problem when the history holds no acknowledged op: a check over nothing would pass whatever happened. */
const nothingToVerify = (history: History): Array<string> =>
  [...history.sectors.values()].some((sector) => sector.acked.length > 0)
    ? []
    : ["the history holds no acknowledged op: there is nothing to verify"]

/** Every discrepancy between the database and the fold of the history's ops (empty when they agree). */
export const discrepancies = async (
  url: string,
  history: History,
  options: { readonly everythingDurable: boolean }
): Promise<ReadonlyArray<string>> => {
  const durable = await readSectors(url, history.sectors.keys())
  const problems: Array<string> = nothingToVerify(history)
  for (const [id] of history.sectors) {
    const { persistedSeq, rows } = durable.get(id)!
    const lastAcked = history.nextSeq(id) - 1
    if (options.everythingDurable && persistedSeq < lastAcked) {
      problems.push(`sector ${id}: ${lastAcked - persistedSeq} acknowledged ops are not durable (persisted ${persistedSeq} of ${lastAcked})`)
    }
    let expected: SectorState.Rows
    try {
      expected = SectorState.toRows(SectorState.fold(history.durablePrefix(id, persistedSeq)))
    } catch (error) {
      problems.push(String(error))
      continue
    }
    if (!same(expected, rows)) {
      problems.push(`sector ${id}: durable rows differ from the fold of ops 1..${persistedSeq}: ${firstDifference(rows, expected)}`)
    }
  }
  return problems
}

/** Every discrepancy between what a running host serves and the fold of the history's ops (empty when they agree). */
export const readBack = async (baseUrl: string, history: History): Promise<ReadonlyArray<string>> => {
  const problems: Array<string> = nothingToVerify(history)
  for (const [id] of history.sectors) {
    const status = (await (await fetch(`${baseUrl}/sectors/${id}`)).json()) as { persistedSeq: number }
    const lastAcked = history.nextSeq(id) - 1
    if (status.persistedSeq !== lastAcked) problems.push(`sector ${id}: host says persisted ${status.persistedSeq}, acked ${lastAcked}`)
    const state = SectorState.fold(history.durablePrefix(id, lastAcked))
    const entities = new Set(history.sector(id).acked.flatMap((a) => a.ops.map((op) => op.entity)))
    for (const entity of entities) {
      const want = SectorState.view(state, entity)
      const response = await fetch(`${baseUrl}/sectors/${id}/entities/${entity}`)
      const body = (await response.json()) as { components?: unknown; authority?: unknown }
      if (want === undefined) {
        if (response.status !== 404) problems.push(`sector ${id} entity ${entity}: ${response.status}, expected 404`)
      } else if (
        response.status !== 200 ||
        !same({ c: body.components, a: body.authority }, { c: want.components, a: want.authority })
      ) {
        problems.push(`sector ${id} entity ${entity}: served state differs from the fold`)
      }
    }
  }
  return problems
}

/**
 * Flushes every sector of the history through a running host; every discrepancy (empty when each answers 200 with
 * its last acknowledged op as the watermark).
 */
export const flushAll = async (baseUrl: string, history: History): Promise<ReadonlyArray<string>> => {
  const problems = await Promise.all([...history.sectors.keys()].map(async (id) => {
    const { body, status } = await call(baseUrl, "POST", `/sectors/${id}/flush`)
    const lastAcked = history.nextSeq(id) - 1
    if (status !== 200) return [`sector ${id}: flush answered ${status} ${JSON.stringify(body)}`]
    if (body.persistedSeq !== lastAcked) return [`sector ${id}: flushed up to ${body.persistedSeq}, acked ${lastAcked}`]
    return []
  }))
  return problems.flat()
}

/** The first row where the database (`actual`) and the fold (`expected`) disagree, for a readable failure. */
const firstDifference = (actual: SectorState.Rows, expected: SectorState.Rows): string => {
  for (const table of ["components", "authority"] as const) {
    const a: ReadonlyArray<unknown> = actual[table]
    const e: ReadonlyArray<unknown> = expected[table]
    for (let i = 0; i < Math.max(a.length, e.length); i++) {
      if (!same(a[i], e[i])) return `${table} row ${i}: database ${JSON.stringify(a[i])}, fold ${JSON.stringify(e[i])}`
    }
  }
  return "no row differs"
}

/**
 * Equal as JSON values: key order does not matter (jsonb keeps keys in its own order) and neither do prototypes
 * (generated data may have null-prototype objects).
 */
const same = (a: unknown, b: unknown): boolean => isDeepStrictEqual(plain(a), plain(b))
const plain = (value: unknown): unknown => value === undefined ? undefined : JSON.parse(JSON.stringify(value))
