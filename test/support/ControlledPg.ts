/**
 * A PostgreSQL server the test controls: started from the embedded binaries on a fixed port and data directory so
 * it can be stopped (an outage) and started again at the same address, with the data kept.
 */
import { PgEmbedded, Port } from "@sectors/pg-embedded"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

export interface ControlledPg {
  /** URL of its `postgres` database. */
  readonly url: () => string
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
  /** Stops it for good and removes its data. */
  readonly dispose: () => Promise<void>
}

/** Starts a server in a fresh directory on a free port. */
export const start = async (): Promise<ControlledPg> => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "sectors-controlled-"))
  await fs.chmod(dir, 0o755)
  const options = { dataDir: path.join(dir, "pg"), port: await Port.freeAsync(), settings: { fsync: "off", max_connections: "200" } }
  let server: PgEmbedded.AsyncServer | undefined = await PgEmbedded.startAsync(options)
  let url = server.url
  return {
    url: () => url,
    stop: async () => {
      await server?.stop()
      server = undefined
    },
    start: async () => {
      server ??= await PgEmbedded.startAsync(options)
      url = server.url
    },
    dispose: async () => {
      await server?.stop()
      server = undefined
      await fs.rm(dir, { recursive: true, force: true })
    }
  }
}
