/**
 * Every error a caller of @sectors/core can act on, in one place. Submitting can fail with `InvalidOp` (nothing
 * applied), `MailboxFull` (try again after `retryAfterMillis`), `SinkUnavailable` (the database is failing and the
 * circuit is open; try again later), `IdempotencyMismatch` (a key reused for other content), `ShuttingDown` (go
 * elsewhere) or `DurableTimeout` (accepted, but not yet durable within the wait you allowed). Sinks fail with `SinkError`, whose `reason` says what to do with a batch.
 * Defects (bugs) are not here: they go to supervision, which restarts the sector.
 */
import * as Schema from "effect/Schema"

/** One problem with one op of a submission. */
export interface OpIssue {
  /** Position of the op in the submitted array; absent for a problem with the submission as a whole. */
  readonly index?: number | undefined
  /** Field of the op, e.g. `entity`, `data.name`; empty for the op itself. */
  readonly field: string
  readonly message: string
}

const OpIssueSchema = Schema.Struct({
  index: Schema.optional(Schema.Number),
  field: Schema.String,
  message: Schema.String
})

/** A submission was rejected as a whole: nothing of it was applied. `issues` names every bad op and field. */
export class InvalidOp extends Schema.TaggedError<InvalidOp>()("InvalidOp", {
  issues: Schema.Array(OpIssueSchema)
}) {
  override get message(): string {
    return this.issues
      .map((issue) => {
        const where = [issue.index === undefined ? undefined : `ops[${issue.index}]`, issue.field || undefined]
          .filter((part) => part !== undefined).join(".")
        return `${where}: ${issue.message}`
      })
      .join("; ")
  }
}

/** The sector's mailbox is full: the sector is behind. Nothing was applied; retry after `retryAfterMillis`. */
export class MailboxFull extends Schema.TaggedError<MailboxFull>()("MailboxFull", {
  sectorId: Schema.Number,
  capacity: Schema.Number,
  retryAfterMillis: Schema.Number
}) {
  override get message(): string {
    return `sector ${this.sectorId}: mailbox full (${this.capacity} submissions waiting)`
  }
}

/**
 * The database is failing and the circuit breaker is open: new submissions are refused (nothing applied) until it
 * lets a probe through. Everything accepted earlier stays buffered and is persisted once the database is back.
 */
export class SinkUnavailable extends Schema.TaggedError<SinkUnavailable>()("SinkUnavailable", {
  retryAfterMillis: Schema.Number,
  reason: Schema.String
}) {
  override get message(): string {
    return `persistence unavailable (${this.reason}); retry in ${Math.ceil(this.retryAfterMillis / 1000)} s`
  }
}

/**
 * The host's buffer budget (`maxBufferedBytes`) cannot take this submission: the sectors already hold that much
 * accepted data not yet durable (the database is slow or away). Nothing was applied; retry after `retryAfterMillis`.
 */
export class BufferFull extends Schema.TaggedError<BufferFull>()("BufferFull", {
  sectorId: Schema.Number,
  bufferedBytes: Schema.Number,
  budgetBytes: Schema.Number,
  retryAfterMillis: Schema.Number
}) {
  override get message(): string {
    return `the buffer budget is spent (${this.bufferedBytes} of ${this.budgetBytes} bytes held until the database ` +
      `takes them)`
  }
}

/**
 * The sector holds `maxPendingKeys` distinct keys not yet durable (the database is slow or away). Nothing was
 * applied; retry after `retryAfterMillis`.
 */
export class BacklogFull extends Schema.TaggedError<BacklogFull>()("BacklogFull", {
  sectorId: Schema.Number,
  maxPendingKeys: Schema.Number,
  retryAfterMillis: Schema.Number
}) {
  override get message(): string {
    return `sector ${this.sectorId} holds ${this.maxPendingKeys} keys not yet durable`
  }
}

/**
 * The host holds `maxActiveSectors` sectors and every one of them still has ops to persist (the database is slow
 * or down), so no new sector can be activated now. Nothing was applied; retry after `retryAfterMillis`.
 */
export class ResidencyFull extends Schema.TaggedError<ResidencyFull>()("ResidencyFull", {
  sectorId: Schema.Number,
  maxActiveSectors: Schema.Number,
  retryAfterMillis: Schema.Number
}) {
  override get message(): string {
    return `sector ${this.sectorId} cannot be activated: all ${this.maxActiveSectors} resident sectors hold ` +
      `unpersisted ops`
  }
}

/**
 * A submission carried an idempotency key the sector already holds for a submission with other content (another
 * fingerprint). Nothing was applied; the key answers only for the submission it was first given with.
 */
export class IdempotencyMismatch extends Schema.TaggedError<IdempotencyMismatch>()("IdempotencyMismatch", {
  sectorId: Schema.Number,
  key: Schema.String
}) {
  override get message(): string {
    return `sector ${this.sectorId}: the idempotency key was used for a different submission`
  }
}

/** The host (or this sector) is shutting down and takes no new submissions. Nothing was applied. */
export class ShuttingDown extends Schema.TaggedError<ShuttingDown>()("ShuttingDown", {
  sectorId: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    return this.sectorId === undefined ? "shutting down" : `sector ${this.sectorId} is shutting down`
  }
}

/**
 * A durable acknowledgement was asked for and the ops were accepted (they have seqs and will be persisted), but
 * they were not yet durable within the allowed wait.
 */
export class DurableTimeout extends Schema.TaggedError<DurableTimeout>()("DurableTimeout", {
  sectorId: Schema.Number,
  firstSeq: Schema.Number,
  lastSeq: Schema.Number,
  persistedSeq: Schema.Number
}) {
  override get message(): string {
    return `sector ${this.sectorId}: ops ${this.firstSeq}..${this.lastSeq} accepted but not yet durable ` +
      `(durable up to ${this.persistedSeq})`
  }
}

/**
 * What a sink says about a failed batch:
 * - `Transient`: try again (connection lost, deadlock, server restarting…);
 * - `Rejected`: the data is at fault (a constraint, a value the database cannot store): isolate the poison op,
 *   dead-letter it, persist the rest;
 * - `Fenced`: another owner claimed the sector since this one loaded it; this owner must stop writing;
 * - `Fatal`: neither waiting briefly nor dropping data helps (missing table, bad credentials): keep the buffer,
 *   keep the circuit open, alert.
 */
export type SinkErrorReason = "Transient" | "Rejected" | "Fenced" | "Fatal"

/** A sink operation failed; `reason` decides what happens to the batch, `isRetryable` whether to retry it. */
export class SinkError extends Schema.TaggedError<SinkError>()("SinkError", {
  reason: Schema.Literals(["Transient", "Rejected", "Fenced", "Fatal"]),
  message: Schema.String,
  /** The driver's code (SQLSTATE, errno) when there is one. */
  code: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {
  /** Whether retrying the same batch may succeed. */
  get isRetryable(): boolean {
    return this.reason === "Transient"
  }
}

/** A sector lost ownership to another owner (fencing) and stopped; its unpersisted ops are discarded. */
export class SectorFenced extends Schema.TaggedError<SectorFenced>()("SectorFenced", {
  sectorId: Schema.Number
}) {
  override get message(): string {
    return `sector ${this.sectorId} is owned by another host now`
  }
}
