/**
 * The entries of a group of batches as column arrays, one set per kind of write, ready to be bound as the array
 * parameters of an `UNNEST`; and the encoders of those arrays for @effect/sql-pg (binary `int8[]`, `int4[]`, `text[]`,
 * `jsonb[]`, `float8[]`). Private to `Statements`.
 */
import { PgTypes } from "@effect/sql-pg"
import type { Batch } from "@sectors/core"
import { absurd } from "effect/Function"
import * as Result from "effect/Result"

const param = (result: Result.Result<PgTypes.Parameter, PgTypes.CodecError>) => Result.getOrThrow(result)

/** `values` as a binary `bigint[]` parameter. */
export const int8s = (values: ReadonlyArray<number>) => param(PgTypes.array(values.map(BigInt), PgTypes.OID.int8))

/** `values` as a binary `int4[]` parameter. */
export const int4s = (values: ReadonlyArray<number>) => param(PgTypes.array(values, PgTypes.OID.int4))

/** `values` as a binary `text[]` parameter. */
export const texts = (values: ReadonlyArray<string>) => param(PgTypes.array(values, PgTypes.OID.text))

/** `values` as a binary `jsonb[]` parameter. */
export const jsonbs = (values: ReadonlyArray<unknown>) => param(PgTypes.array(values, PgTypes.OID.jsonb))

/** `values` as a binary `float8[]` parameter. */
export const float8s = (values: ReadonlyArray<number>) => param(PgTypes.array(values, PgTypes.OID.float8))

/** Column arrays of one kind of write, for an `UNNEST`. */
export interface KeyColumns {
  readonly sector: Array<number>
  readonly entity: Array<number>
  readonly component: Array<string>
  readonly seq: Array<number>
}

/** Every write of a group, by kind, as column arrays. */
export interface Columns {
  readonly tombstones: { readonly sector: Array<number>; readonly entity: Array<number>; readonly seq: Array<number> }
  readonly removed: KeyColumns
  readonly cleared: KeyColumns
  readonly components: KeyColumns & { readonly data: Array<unknown> }
  readonly authority: KeyColumns & { readonly worker: Array<string> }
}

const keyColumns = (): KeyColumns => ({ sector: [], entity: [], component: [], seq: [] })

const pushKey = (columns: KeyColumns, sector: number, entity: number, component: string, seq: number) => {
  columns.sector.push(sector)
  columns.entity.push(entity)
  columns.component.push(component)
  columns.seq.push(seq)
}

/** Splits the entries of `batches` (those `include` accepts) into column arrays by kind. */
export const columnsOf = (batches: ReadonlyArray<Batch.Batch>, include: (sectorId: number) => boolean): Columns => {
  const columns: Columns = {
    tombstones: { sector: [], entity: [], seq: [] },
    removed: keyColumns(),
    cleared: keyColumns(),
    components: { ...keyColumns(), data: [] },
    authority: { ...keyColumns(), worker: [] }
  }
  for (const batch of batches) {
    if (!include(batch.sectorId)) continue
    const sector = batch.sectorId
    for (const entry of batch.entries) {
      switch (entry._tag) {
        case "Delete":
          columns.tombstones.sector.push(sector)
          columns.tombstones.entity.push(entry.entity)
          columns.tombstones.seq.push(entry.seq)
          break
        case "Remove":
          pushKey(columns.removed, sector, entry.entity, entry.component, entry.seq)
          break
        case "Upsert":
          pushKey(columns.components, sector, entry.entity, entry.component, entry.seq)
          columns.components.data.push(entry.data)
          break
        case "Authority":
          if (entry.worker === null) {
            pushKey(columns.cleared, sector, entry.entity, entry.component, entry.seq)
          } else {
            pushKey(columns.authority, sector, entry.entity, entry.component, entry.seq)
            columns.authority.worker.push(entry.worker)
          }
          break
        default:
          // a new kind of entry must be given its columns here
          absurd(entry)
      }
    }
  }
  return columns
}

/** Whether the group only writes (no tombstone, removal or cleared authority): `Statements`' single statement. */
export const writesOnly = (columns: Columns): boolean =>
  columns.tombstones.sector.length === 0 && columns.removed.sector.length === 0 && columns.cleared.sector.length === 0
