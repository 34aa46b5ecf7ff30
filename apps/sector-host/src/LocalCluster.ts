/**
 * Entry point of `npm run cluster -- --hosts 3`: a cluster on this machine to try sharding with. Starts one embedded
 * PostgreSQL (data in `.sectors/cluster-pg`, kept across runs) and N sector-hosts on it as runners, on consecutive
 * ports — HTTP from `--port` (8080), cluster transport from `--runner-port` (9431: below Linux's ephemeral ports, 32768-60999, where an outgoing connection can hold a port a runner wants — effect's own default, 34431, is among them) — prints their URLs, and on Ctrl-C
 * (or SIGTERM) stops them one after the other, each handing its sectors off and flushing, then PostgreSQL. Every other
 * flag is passed to each host (`--profile aggressive`). Each host's log lines are prefixed with its number.
 *
 * The hosts run in process groups of their own, so a Ctrl-C reaches this script only and the stop is in order.
 */
import { PgEmbedded } from "@sectors/pg-embedded"
import { type ChildProcess, spawn } from "node:child_process"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("./main.ts", import.meta.url))

interface Options {
  readonly hosts: number
  readonly port: number
  readonly runnerPort: number
  readonly rest: ReadonlyArray<string>
}

const usage = "usage: npm run cluster -- [--hosts 3] [--port 8080] [--runner-port 9431] [host flags…]"

const parse = (argv: ReadonlyArray<string>): Options => {
  const numbers: Record<string, number> = { hosts: 3, port: 8080, "runner-port": 9431 }
  const rest: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i]!.replace(/^--/, "").split(/=(.*)/s, 2) as [string, string | undefined]
    if (argv[i]!.startsWith("--") && name in numbers) {
      const value = Number(inline ?? argv[++i])
      if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`--${name} needs a whole number\n${usage}`)
      numbers[name] = value
    } else {
      rest.push(argv[i]!)
    }
  }
  return { hosts: numbers["hosts"]!, port: numbers["port"]!, runnerPort: numbers["runner-port"]!, rest }
}

interface Running {
  readonly n: number
  readonly child: ChildProcess
  readonly exited: Promise<number | null>
}

const start = (n: number, env: NodeJS.ProcessEnv, args: ReadonlyArray<string>): Promise<Running & { url: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true
    })
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
    let url: string | undefined
    for (const stream of [child.stdout, child.stderr]) {
      readline.createInterface({ input: stream }).on("line", (line) => {
        process.stdout.write(`[host ${n}] ${line}\n`)
        const match = url === undefined ? /listening on (https?:\/\/\S+?),/.exec(line) : null
        if (match) {
          url = match[1]!
          resolve({ n, child, exited, url })
        }
      })
    }
    void exited.then((code) => {
      if (url === undefined) reject(new Error(`host ${n} exited with code ${code} before listening`))
    })
  })

const main = async () => {
  const options = parse(process.argv.slice(2))
  const pg = await PgEmbedded.startAsync({ dataDir: ".sectors/cluster-pg" })
  process.stdout.write(`PostgreSQL on port ${pg.port} (data in ${pg.dataDir})\n`)
  const running: Array<Running> = []
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    for (const host of running) {
      process.stdout.write(`stopping host ${host.n}…\n`)
      host.child.kill("SIGTERM")
      const code = await host.exited
      process.stdout.write(`host ${host.n} stopped (exit code ${code})\n`)
    }
    await pg.stop()
    process.stdout.write("PostgreSQL stopped\n")
    process.exit(0)
  }
  process.on("SIGINT", () => void stop())
  process.on("SIGTERM", () => void stop())
  try {
    for (let i = 0; i < options.hosts; i++) {
      const env = {
        ...process.env,
        DATABASE_URL: pg.url,
        PORT: String(options.port + i),
        RUNNER_PORT: String(options.runnerPort + i)
      }
      running.push(await start(i + 1, env, options.rest).then((host) => {
        process.stdout.write(`host ${i + 1}: ${host.url} (runner port ${options.runnerPort + i})\n`)
        return host
      }))
    }
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    await stop()
    return
  }
  process.stdout.write(
    `${options.hosts} hosts up: ${Array.from({ length: options.hosts }, (_, i) => `http://127.0.0.1:${options.port + i}`).join(" ")}` +
      ` — GET /cluster on any of them; Ctrl-C stops them in order\n`
  )
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exit(1)
})
