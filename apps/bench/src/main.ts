/**
 * The benchmark harness: `npm run bench` (quick, about seven minutes on two cores) or `npm run bench -- --full`;
 * suites may be named to run only those (`npm run bench -- sink idle`): `scenarios`, `capacity`, `latency` (issue 17
 * item 5: op→durable at 2,000 ops/s, one submission in 5 timed), `idle`, `limit`,
 * `sector-row`, `sink`, `http`, `cluster` (`--baseline <checkout>`: also measure another checkout's standalone host,
 * alternately with this one's), `netresult` (the field report's Net Result table, old loop against ours; only by
 * name or with `--full`), `lean` (single-op POSTs: bare node:http, effect HttpRouter and the host side by side, and
 * the host's CPU profile), `ingest` (HTTP and WebSocket ingest capacity), `footprint` (memory per idle and active sector and per entity, with a heap-snapshot
 * breakdown, each probe in a child `node --expose-gc`; only by name). Runs on an embedded PostgreSQL with durable settings (or `DATABASE_URL`), writes
 * `apps/bench/results/<timestamp>.json` (raw figures), `<timestamp>.md` and its charts in `<timestamp>/`, and
 * prints the Markdown report. `--render <results.json> [--out <report.md>]` renders a saved run again (charts in a
 * directory named after the report, lower-cased: `docs/BENCHMARKS.md` → `docs/benchmarks/`).
 */
import { NodeServices } from "@effect/platform-node"
import { PgEmbedded } from "@sectors/pg-embedded"
import { Workload } from "@sectors/workloads"
import { Effect, Logger } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Capacity from "./Capacity.ts"
import * as ClusterVariant from "./ClusterVariant.ts"
import * as Footprint from "./Footprint.ts"
import * as HttpVariant from "./HttpVariant.ts"
import * as Idle from "./Idle.ts"
import * as IngestCapacity from "./IngestCapacity.ts"
import * as Latency from "./Latency.ts"
import * as Lean from "./Lean.ts"
import * as Limit from "./Limit.ts"
import * as NetResult from "./NetResult.ts"
import * as Report from "./Report.ts"
import * as Run from "./Run.ts"
import * as SectorRow from "./SectorRow.ts"
import * as SinkThroughput from "./SinkThroughput.ts"

const args = process.argv.slice(2)
const full = args.includes("--full")
const valueOf = (flag: string) => {
  const at = args.indexOf(flag)
  return at < 0 ? undefined : args[at + 1]
}
const renderFrom = valueOf("--render")
const renderTo = valueOf("--out")
const baseline = valueOf("--baseline")
const suites = args.filter((arg, i) => !arg.startsWith("--") && !["--render", "--out", "--baseline"].includes(args[i - 1] ?? ""))
const known = ["scenarios", "capacity", "latency", "idle", "limit", "sector-row", "sink", "http", "cluster", "netresult", "footprint", "lean", "ingest"]
for (const suite of suites) {
  if (!known.includes(suite)) {
    console.error(`bench: unknown suite "${suite}" (known: ${known.join(", ")})`)
    process.exit(2)
  }
}
/**
 * `netresult` (about two minutes) runs only by name or with `--full`, `footprint` (several minutes, GiBs of heap
 * snapshot) only by name; every other suite also in the quick run.
 */
const wants = (suite: string) =>
  suites.includes(suite) || (suites.length === 0 && suite !== "footprint" && (suite !== "netresult" || full))
const resultsDir = fileURLToPath(new URL("../results/", import.meta.url))

const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ` +
  `Node ${process.version}, ${os.platform()} ${os.release()}`

/** Shorter cycles in quick mode: the same shapes, compressed in time. */
const scale = full ? 1 : 0.25
const workloads: Record<Workload.Scenario, Workload.Workload> = {
  sustained: Workload.fieldReport.sustained,
  bursty: { ...Workload.fieldReport.bursty, rate: (t) => Workload.fieldReport.bursty.rate(t / scale) },
  sporadic: Workload.fieldReport.sporadic,
  ramp: {
    ...Workload.fieldReport.ramp,
    // quick: reach the same top rate within the run
    rate: (t) => Math.min(5_000, 10 + (full ? 100 * Math.floor(t / 30) : 500 * Math.floor(t)))
  }
}

const matrix: ReadonlyArray<{ scenario: Workload.Scenario; profiles: ReadonlyArray<"immediate" | "conservative" | "balanced" | "aggressive">; seconds: number }> = full
  ? [
    { scenario: "sustained", profiles: ["immediate", "conservative", "balanced", "aggressive"], seconds: 30 },
    { scenario: "bursty", profiles: ["immediate", "conservative", "balanced", "aggressive"], seconds: 60 },
    { scenario: "sporadic", profiles: ["immediate", "conservative", "balanced", "aggressive"], seconds: 20 },
    { scenario: "ramp", profiles: ["immediate", "conservative", "balanced", "aggressive"], seconds: 120 }
  ]
  : [
    { scenario: "sustained", profiles: ["immediate", "conservative", "balanced", "aggressive"], seconds: 8 },
    { scenario: "bursty", profiles: ["immediate", "conservative", "balanced", "aggressive"], seconds: 10 },
    { scenario: "sporadic", profiles: ["immediate", "balanced"], seconds: 6 },
    { scenario: "ramp", profiles: ["immediate", "balanced"], seconds: 10 }
  ]

const program = Effect.gen(function*() {
  const { description, url } = yield* PgEmbedded.DatabaseUrl
  const started = performance.now()
  const startedAt = new Date().toISOString()
  const log = (message: string) => Effect.sync(() => console.error(`[bench] ${message}`))
  yield* log(`${full ? "full" : "quick"} run on ${description}; ${machine}`)

  const scenarios: Array<Run.Result> = []
  if (wants("scenarios")) {
    for (const { profiles, scenario, seconds } of matrix) {
      for (const profile of profiles) {
        yield* log(`scenario ${scenario} / ${profile} (${seconds} s)`)
        scenarios.push(yield* Run.run(url, { label: scenario, workload: workloads[scenario], profile, seconds }))
      }
    }
  }
  const capacity: Array<Capacity.Capacity> = []
  if (wants("capacity")) {
    for (const profile of ["immediate", "balanced"] as const) {
      yield* log(`capacity search, ${profile}`)
      capacity.push(yield* Capacity.search(url, {
        profile,
        workload: Workload.fieldReport.sustained,
        rates: [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000],
        seconds: full ? 10 : 4,
        refine: 2
      }))
    }
  }
  let latency: Latency.Result | undefined
  if (wants("latency")) {
    yield* log("latency: op→durable at 2,000 ops/s, balanced, one submission in 5 timed")
    latency = yield* Latency.run(url, full ? Latency.full : Latency.quick)
  }
  let idle: Idle.Result | undefined
  if (wants("idle")) {
    yield* log("idle, 100 000 sectors")
    idle = yield* Idle.run(url, { sectors: 100_000, seconds: full ? 30 : 5 })
  }
  let limit: Limit.Result | undefined
  if (wants("limit")) {
    yield* log("practical limit")
    limit = yield* Limit.run(url, full ? 20 : 6)
  }
  let sectorRow: ReadonlyArray<SectorRow.Point> | undefined
  let sectorRowMarginal: ReadonlyArray<SectorRow.Marginal> | undefined
  let sectorRowCommitted: ReadonlyArray<SectorRow.Committed> | undefined
  if (wants("sector-row")) {
    yield* log("sector-row cost (EXPLAIN ANALYZE)")
    sectorRow = yield* SectorRow.run(url, full ? 200 : 40)
    yield* log("sector-row cost (marginal, pg_stat_statements)")
    sectorRowMarginal = yield* SectorRow.marginal(url, full ? 6000 : 2000)
    yield* log("sector-row cost (the database's time per committed statement)")
    sectorRowCommitted = yield* SectorRow.committed(url, full ? 1000 : 300)
  }
  let sink: ReadonlyArray<SinkThroughput.Figure> | undefined
  if (wants("sink")) {
    yield* log("sink throughput")
    sink = yield* SinkThroughput.run(url, full ? SinkThroughput.full : SinkThroughput.quick)
  }
  let http: Report.Results["http"]
  if (wants("http")) {
    yield* log("through HTTP")
    http = yield* HttpVariant.run(url, { rate: 2_000, seconds: full ? 20 : 6 })
  }
  let lean: Lean.Result | undefined
  if (wants("lean")) {
    yield* log("lean: single-op POSTs, bare node:http / effect HttpRouter / sector-host side by side, then a profile")
    lean = yield* Lean.run(url, {
      ...(full ? Lean.full : Lean.quick),
      baseline: baseline === undefined ? undefined : path.resolve(baseline)
    }, log)
  }
  let ingest: IngestCapacity.Result | undefined
  if (wants("ingest")) {
    yield* log("ingest: highest sustained single-op POSTs and single-op /ingest frames (8 connections)")
    ingest = yield* IngestCapacity.run(url, full ? IngestCapacity.full : IngestCapacity.quick, log)
  }
  let cluster: ClusterVariant.Result | undefined
  if (wants("cluster")) {
    yield* log("cluster: standalone, a cluster of one, three runners")
    cluster = yield* ClusterVariant.run(url, {
      connections: 16,
      opsPerRequest: 10,
      seconds: full ? 30 : 10,
      warmupSeconds: full ? 5 : 3,
      probeRequests: full ? 2_000 : 600,
      baseline: baseline === undefined ? undefined : path.resolve(baseline)
    }, log)
  }

  let netResult: NetResult.Result | undefined
  if (wants("netresult")) {
    netResult = yield* NetResult.run(url, full ? NetResult.full : NetResult.quick, log)
  }

  let footprint: Footprint.Result | undefined
  if (wants("footprint")) {
    footprint = yield* Footprint.run(url, Footprint.standard, log)
  }

  const results: Report.Results = {
    mode: full ? "full" : "quick",
    machine,
    database: description,
    startedAt,
    durationSeconds: (performance.now() - started) / 1000,
    scenarios,
    capacity,
    idle,
    limit,
    sectorRow,
    sectorRowMarginal,
    sectorRowCommitted,
    sink,
    http,
    lean,
    ingest,
    cluster,
    netResult,
    footprint,
    latency
  }
  const stamp = startedAt.replace(/[:.]/g, "-")
  yield* Effect.promise(async () => {
    await fs.mkdir(resultsDir, { recursive: true })
    await fs.writeFile(path.join(resultsDir, `${stamp}.json`), JSON.stringify(results, null, 2))
  })
  const report = yield* Effect.promise(() => writeReport(results, path.join(resultsDir, `${stamp}.md`)))
  console.log(report.markdown)
  yield* log(`written to ${path.join(resultsDir, stamp)}.{json,md}, charts in ${path.join(resultsDir, report.chartDir)}/`)
})

/**
 * Renders `results` into `file` (Markdown) and its charts into the directory named after it, lower-cased (so
 * `docs/BENCHMARKS.md` gets `docs/benchmarks/`); returns the Markdown and that directory's name.
 */
const writeReport = async (results: Report.Results, file: string) => {
  const chartDir = path.basename(file, ".md").toLowerCase()
  const report = await Report.render(results, chartDir)
  await fs.mkdir(path.join(path.dirname(file), chartDir), { recursive: true })
  await fs.writeFile(file, report.markdown)
  for (const [name, svg] of report.charts) await fs.writeFile(path.join(path.dirname(file), chartDir, name), svg)
  return { markdown: report.markdown, chartDir }
}

if (renderFrom !== undefined) {
  const results = JSON.parse(await fs.readFile(renderFrom, "utf8")) as Report.Results
  const out = renderTo ?? renderFrom.replace(/\.json$/, ".md")
  await writeReport(results, out)
  console.error(`[bench] rendered ${renderFrom} into ${out}`)
  process.exit(0)
}

Effect.runPromise(program.pipe(
  Effect.provide(PgEmbedded.layer({ settings: { max_connections: "300", shared_buffers: "256MB" } })),
  Effect.provide(NodeServices.layer),
  Effect.provide(Logger.layer([]))
)).catch((error) => {
  console.error(`bench: ${String(error)}`)
  process.exit(1)
})
