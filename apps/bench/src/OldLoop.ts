/**
 * The field report's old persistence loop, re-created plainly for the `netresult` suite, so that its "before" column
 * is measured here rather than quoted. One loop per sector, as the report's adapter had:
 *
 * - a timer polls the queue every 1 ms while it is empty (the report's idle delay: `Task.Delay(1)`);
 * - it takes whatever ops are queued — all of them — as one batch (`FetchUpdates()` drains without blocking);
 * - the batch is one transaction: one prepared upsert per op (no collapsing: ten updates of one component are ten
 *   statements), then the sector's timestamp upsert (`INSERT INTO persistence.persisted_timestamps … ON CONFLICT
 *   DO UPDATE`, the report's `ps_update_timestamp`), all sent in one round trip like an `NpgsqlBatch`;
 * - then it loops at once.
 *
 * It writes through the `postgres` driver the bench already uses (which prepares every statement by name), into
 * the sink's own `entity_components` table, so the data rows cost the same as ours. Nothing here is fenced, nothing
 * is exactly-once: it is the baseline, not a design.
 */
import postgres from "postgres"

/** One queued op: a component's new value. */
export interface Update {
  readonly entity: number
  readonly component: string
  readonly data: { readonly x: number; readonly y: number }
}

/** What the loop has done so far. */
export interface Counters {
  readonly batches: number
  /** Ops written (each one a statement: no collapsing). */
  readonly ops: number
  /** Ops in each batch, in order. */
  readonly batchOps: ReadonlyArray<number>
  /** op→durable of every op written: its commit's end less its offer (ms). */
  readonly latencyMillis: ReadonlyArray<number>
  /** Ops offered and not yet written. */
  readonly queued: number
}

/** A running loop. */
export interface OldLoop {
  /** Queues ops for the loop (never blocks, never refuses: the report's channels are unbounded). */
  readonly offer: (updates: ReadonlyArray<Update>) => void
  readonly counters: () => Counters
  /** Forgets the counters (not the queue). */
  readonly reset: () => void
  /** Stops polling once the batch in flight is written; the queue is dropped. */
  readonly stop: () => Promise<void>
}

/** The report's timestamp table, created in the schema its statement names. */
export const createTimestampTable = async (sql: postgres.Sql) => {
  await sql`CREATE SCHEMA IF NOT EXISTS persistence`
  await sql`CREATE TABLE IF NOT EXISTS persistence.persisted_timestamps (
    sector_id bigint PRIMARY KEY,
    persisted_at timestamptz NOT NULL
  )`
}

const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis))

/**
 * Starts the loop for `sectorId` on `sql` (give it a pool of one connection: one loop, one connection). The
 * tables must exist (`Migrations.run` and `createTimestampTable`).
 */
export const start = (sql: postgres.Sql, sectorId: number): OldLoop => {
  let queue: Array<{ readonly update: Update; readonly at: number }> = []
  let running = true
  let seq = 0
  let batches = 0
  let ops = 0
  let batchOps: Array<number> = []
  let latencyMillis: Array<number> = []

  const persist = async (batch: ReadonlyArray<{ readonly update: Update; readonly at: number }>) => {
    await sql.begin((tx) => [
      ...batch.map(({ update }) =>
        tx`INSERT INTO entity_components (sector_id, entity_id, component, data, seq)
          VALUES (${sectorId}, ${update.entity}, ${update.component}, ${JSON.stringify(update.data)}::jsonb, ${++seq})
          ON CONFLICT (sector_id, entity_id, component) DO UPDATE SET data = EXCLUDED.data, seq = EXCLUDED.seq`
      ),
      tx`INSERT INTO persistence.persisted_timestamps (sector_id, persisted_at) VALUES (${sectorId}, ${new Date()})
        ON CONFLICT (sector_id) DO UPDATE SET persisted_at = EXCLUDED.persisted_at`
    ])
    const end = performance.now()
    batches++
    ops += batch.length
    batchOps.push(batch.length)
    for (const { at } of batch) latencyMillis.push(end - at)
  }

  const loop = (async () => {
    while (running) {
      if (queue.length === 0) {
        await sleep(1)
        continue
      }
      const batch = queue
      queue = []
      await persist(batch)
    }
  })()

  return {
    offer: (updates) => {
      const at = performance.now()
      for (const update of updates) queue.push({ update, at })
    },
    counters: () => ({ batches, ops, batchOps, latencyMillis, queued: queue.length }),
    reset: () => {
      batches = 0
      ops = 0
      batchOps = []
      latencyMillis = []
    },
    stop: async () => {
      running = false
      await loop
    }
  }
}
