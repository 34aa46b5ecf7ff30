/**
 * The benchmark harness: `npm run bench` (quick) or `npm run bench -- --full`, optionally naming suites
 * (`npm run bench -- sink`). Runs on an embedded PostgreSQL with durable settings (or `DATABASE_URL`), prints a
 * Markdown report and writes the raw figures to `apps/bench/results/<timestamp>.json`.
 */
import { PgEmbedded } from "@sectors/pg-embedded"
import { Effect, Logger } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as SinkThroughput from "./SinkThroughput.ts"

const args = process.argv.slice(2)
const fullMode = args.includes("--full")
const suites = args.filter((arg) => !arg.startsWith("--"))
const wants = (suite: string) => suites.length === 0 || suites.includes(suite)
const resultsDir = fileURLToPath(new URL("../results/", import.meta.url))

const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
  `Node ${process.version}, ${os.platform()} ${os.release()}`

const program = Effect.gen(function*() {
  const { description, url } = yield* PgEmbedded.DatabaseUrl
  yield* Effect.logInfo(`benchmarks (${fullMode ? "full" : "quick"}) on ${description}; machine: ${machine}`)
  const report: Record<string, unknown> = { startedAt: new Date().toISOString(), mode: fullMode ? "full" : "quick", machine }
  const sections: Array<string> = []
  if (wants("sink")) {
    const figures = yield* SinkThroughput.run(url, fullMode ? SinkThroughput.full : SinkThroughput.quick)
    report["sink"] = figures
    sections.push("## Sink throughput (rows/s, distinct keys, one connection)\n\n" + SinkThroughput.table(figures))
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-")
  yield* Effect.promise(() => fs.mkdir(resultsDir, { recursive: true }))
  const file = path.join(resultsDir, `${stamp}.json`)
  yield* Effect.promise(() => fs.writeFile(file, JSON.stringify(report, null, 2)))
  console.log(`\n# Benchmarks (${report["mode"]})\n\nMachine: ${machine}\n\n${sections.join("\n\n")}\n\nRaw figures: ${file}`)
})

Effect.runPromise(program.pipe(
  Effect.provide(PgEmbedded.layer({ settings: { max_connections: "200" } })),
  Effect.provide(Logger.layer([Logger.consolePretty()]))
)).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
