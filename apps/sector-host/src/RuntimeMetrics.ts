/**
 * Process and runtime metrics under the names prom-client's default collectors use (`process_cpu_seconds_total`,
 * `process_resident_memory_bytes`, `nodejs_heap_size_used_bytes`, `nodejs_gc_duration_seconds`,
 * `nodejs_eventloop_lag_p99_seconds` …), so that the usual Node.js dashboards work on a sector host unchanged. They
 * live in effect's metric registry next to the runtime's own (`@sectors/core` `Metrics`), so Prometheus (`GET
 * /metrics`) and OTLP export them alike.
 *
 * **Collected when read, never on a timer.** Every figure but the GC histogram is a series registered with
 * `Metric.registerUnsafe`, whose `get` runs when an exporter snapshots the registry: `PrometheusMetrics.format()` in
 * the `/metrics` handler, and OTLP's export interval (`OTEL_METRIC_EXPORT_INTERVAL`, 10 s by default), which is that
 * exporter's scrape. One snapshot takes one sample (`process.cpuUsage`, `process.memoryUsage`,
 * `performance.eventLoopUtilization`, `process.getActiveResourcesInfo`, `/proc/self/fd`), shared by all its series.
 * The GC histogram is updated by a `PerformanceObserver` for `gc` entries: it runs after a collection, which only
 * happens when JavaScript ran anyway.
 *
 * **Event-loop delay** (`nodejs_eventloop_lag_{min,max,mean,p50,p90,p99}_seconds`) needs samples between scrapes,
 * which Node's `monitorEventLoopDelay` takes with a libuv timer of its own: at a 20 ms resolution that is 50 wakeups
 * a second (measured on Node 24: 246 voluntary context switches and 12 ms of CPU in 5 s idle, against 1 and 0.5 ms
 * without). So it runs only while the loop is busy: each read ends a window, and the monitor is on for the next
 * window only if the loop's utilisation over the one that ended reached `busyUtilisation` (1 %). An idle host turns it
 * off at its first scrape and is woken by nothing of this module after that; a host that is never read never turns it
 * on. A window the monitor was off reports 0 (the loop was idle: there was no delay to speak of). The figures are
 * the delay beyond the sampling interval (Node's histogram holds the whole time between firings; prom-client
 * reports that, so its figures are ours plus its 10 ms resolution).
 * `nodejs_eventloop_lag_seconds` is prom-client's probe: at each read a `setImmediate` measures how long the loop
 * takes to come round (it runs in the same loop iteration as the scrape), and the next read reports it.
 *
 * Gotchas: every reader ends a delay window — with both Prometheus and OTLP reading, each sees the windows between
 * any two reads. Build `layer` once per process and metric registry: two would each observe the same collections.
 */
import { Effect, Layer, Metric } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { constants, type ELDHistogram, monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks"

// ---- the metrics ----

/** Seconds of CPU the process used in user mode. */
export const cpuUserSeconds = Metric.counter("process_cpu_user_seconds_total", {
  description: "Total user CPU time spent in seconds."
})

/** Seconds of CPU the process used in system mode. */
export const cpuSystemSeconds = Metric.counter("process_cpu_system_seconds_total", {
  description: "Total system CPU time spent in seconds."
})

/** Seconds of CPU the process used, user and system. */
export const cpuSeconds = Metric.counter("process_cpu_seconds_total", {
  description: "Total user and system CPU time spent in seconds."
})

/** When the process started, in seconds since the Unix epoch. */
export const startTime = Metric.gauge("process_start_time_seconds", {
  description: "Start time of the process since unix epoch in seconds."
})

/** Resident memory. */
export const residentMemory = Metric.gauge("process_resident_memory_bytes", {
  description: "Resident memory size in bytes."
})

/** Open file descriptors (Linux only). */
export const openFds = Metric.gauge("process_open_fds", { description: "Number of open file descriptors." })

/** The soft limit on open file descriptors (Linux only). */
export const maxFds = Metric.gauge("process_max_fds", { description: "Maximum number of open file descriptors." })

/** V8 heap size. */
export const heapTotal = Metric.gauge("nodejs_heap_size_total_bytes", { description: "Process heap size from Node.js in bytes." })

/** V8 heap used. */
export const heapUsed = Metric.gauge("nodejs_heap_size_used_bytes", {
  description: "Process heap size used from Node.js in bytes."
})

/** Memory of C++ objects bound to JavaScript objects (buffers among them). */
export const externalMemory = Metric.gauge("nodejs_external_memory_bytes", {
  description: "Node.js external memory size in bytes."
})

/** Garbage collections and their pauses; label `kind` (minor, major, incremental, weakcb). */
export const gcDuration = Metric.histogram("nodejs_gc_duration_seconds", {
  description: "Garbage collection duration by kind, one of major, minor, incremental or weakcb.",
  boundaries: [0.001, 0.01, 0.1, 1, 2, 5]
})

/** The kinds of collection `gcDuration` counts, by `PerformanceEntry.detail.kind`. */
export const gcKinds: ReadonlyMap<number, string> = new Map([
  [constants.NODE_PERFORMANCE_GC_MINOR, "minor"],
  [constants.NODE_PERFORMANCE_GC_MAJOR, "major"],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, "incremental"],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, "weakcb"]
])

/** Seconds the event loop spent running callbacks (utilisation = rate of this over rate of it plus idle). */
export const loopActiveSeconds = Metric.counter("nodejs_eventloop_active_seconds_total", {
  description: "Time the event loop spent outside its poll phase (running callbacks), in seconds."
})

/** Seconds the event loop spent waiting for I/O or timers. */
export const loopIdleSeconds = Metric.counter("nodejs_eventloop_idle_seconds_total", {
  description: "Time the event loop spent idle in its poll phase (waiting), in seconds."
})

/** How long the loop took to come round at the previous read (a `setImmediate` probe). */
export const loopLag = Metric.gauge("nodejs_eventloop_lag_seconds", { description: "Lag of event loop in seconds." })

const delayGauge = (stat: string) =>
  Metric.gauge(`nodejs_eventloop_lag_${stat}_seconds`, {
    description: `The ${stat} of the event loop delay in seconds since the previous read (0 while the loop was idle).`
  })

/** Event-loop delay over the window since the previous read, by statistic (0 while the loop was idle). */
export const loopDelay = {
  min: delayGauge("min"),
  max: delayGauge("max"),
  mean: delayGauge("mean"),
  p50: delayGauge("p50"),
  p90: delayGauge("p90"),
  p99: delayGauge("p99")
} as const

/** Handles and requests keeping the loop alive (`process.getActiveResourcesInfo()`), all types. */
export const activeResourcesTotal = Metric.gauge("nodejs_active_resources_total", {
  description: "Number of active resources that are currently keeping the event loop alive"
})

/** Active resources by `type` (`TCPSocketWrap`, `Timeout` …); a type's series appears from the read after it is first seen. */
export const activeResources = Metric.gauge("nodejs_active_resources", {
  description:
    "Number of active resources that are currently keeping the event loop alive, grouped by async resource type."
})

/** 1, with the Node.js version as labels. */
export const versionInfo = Metric.gauge("nodejs_version_info", { description: "Node.js version info." })

// ---- event-loop delay, monitored only while the loop is busy ----

/** Event-loop delay statistics of a window, in seconds. */
export type DelayFigures = Readonly<Record<keyof typeof loopDelay, number>>

const noDelay: DelayFigures = { min: 0, max: 0, mean: 0, p50: 0, p90: 0, p99: 0 }

/** Options of `LoopDelay`. */
export interface LoopDelayOptions {
  /** Sampling interval of `monitorEventLoopDelay` while it runs. Defaults to 20 ms. */
  readonly resolutionMillis?: number | undefined
  /** Utilisation of the loop over a window at or above which the next window is monitored. Defaults to 0.01. */
  readonly busyUtilisation?: number | undefined
  /** The loop's cumulative idle and active milliseconds. Defaults to `performance.eventLoopUtilization()`. */
  readonly utilisation?: (() => { readonly idle: number; readonly active: number }) | undefined
}

/**
 * The event-loop delay monitor and the rule that runs it only while the loop is busy: `roll` ends a window, returns
 * its figures and decides whether the next one is monitored.
 */
export class LoopDelay {
  readonly #histogram: ELDHistogram
  readonly #resolutionMillis: number
  readonly #busyUtilisation: number
  readonly #utilisation: () => { readonly idle: number; readonly active: number }
  #last: { readonly idle: number; readonly active: number }
  #monitoring = false

  constructor(options: LoopDelayOptions = {}) {
    this.#resolutionMillis = options.resolutionMillis ?? 20
    this.#histogram = monitorEventLoopDelay({ resolution: this.#resolutionMillis })
    this.#busyUtilisation = options.busyUtilisation ?? 0.01
    this.#utilisation = options.utilisation ?? (() => performance.eventLoopUtilization())
    this.#last = this.#utilisation()
  }

  /** Whether the monitor's timer runs now. */
  get monitoring(): boolean {
    return this.#monitoring
  }

  /** Ends the current window: its figures (zeros if it was not monitored); monitors the next if this one was busy. */
  roll(): DelayFigures {
    const histogram = this.#histogram
    // the monitor records the time between its timer's firings: the delay is what exceeds the resolution
    const excess = (nanos: number) => Math.max(0, nanos / 1e6 - this.#resolutionMillis) / 1000
    const figures = this.#monitoring && histogram.count > 0
      ? {
        min: excess(histogram.min),
        max: excess(histogram.max),
        mean: excess(histogram.mean),
        p50: excess(histogram.percentile(50)),
        p90: excess(histogram.percentile(90)),
        p99: excess(histogram.percentile(99))
      }
      : noDelay
    histogram.reset()
    const now = this.#utilisation()
    const active = now.active - this.#last.active
    const total = active + now.idle - this.#last.idle
    this.#last = now
    const busy = total > 0 && active / total >= this.#busyUtilisation
    if (busy && !this.#monitoring) histogram.enable()
    if (!busy && this.#monitoring) histogram.disable()
    this.#monitoring = busy
    return figures
  }

  /** Stops the monitor for good. */
  close(): void {
    this.#histogram.disable()
    this.#monitoring = false
  }
}

// ---- sampling ----

interface Sample {
  readonly cpu: NodeJS.CpuUsage
  readonly memory: NodeJS.MemoryUsage
  readonly loop: { readonly idle: number; readonly active: number }
  readonly delay: DelayFigures
  readonly lag: number
  readonly resources: ReadonlyMap<string, number>
  readonly resourcesTotal: number
  readonly openFds: number
}

const countOpenFds = (): number => {
  try {
    return readdirSync("/proc/self/fd").length - 1 // the directory's own descriptor
  } catch {
    return 0
  }
}

const readMaxFds = (): number | undefined => {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"))
    return line === null ? undefined : Number(line[1])
  } catch {
    return undefined
  }
}

/**
 * Registers the process and runtime series in the current metric registry and starts observing collections;
 * removes them and stops on release.
 */
export const layer: Layer.Layer<never> = Layer.effectDiscard(Effect.gen(function*() {
  const context = yield* Effect.context<never>()
  const delay = new LoopDelay()
  let lag = 0
  let probing = false
  let current: Sample | undefined

  /** The sample of the current read: taken by its first series, shared by the others of the same snapshot. */
  const sample = (): Sample => {
    if (current !== undefined) return current
    if (!probing) {
      probing = true
      const startedAt = performance.now()
      setImmediate(() => {
        lag = (performance.now() - startedAt) / 1000
        probing = false
      })
    }
    const resources = new Map<string, number>()
    const info = process.getActiveResourcesInfo()
    for (const type of info) resources.set(type, (resources.get(type) ?? 0) + 1)
    for (const type of resources.keys()) byType(type)
    const taken: Sample = {
      cpu: process.cpuUsage(),
      memory: process.memoryUsage(),
      loop: performance.eventLoopUtilization(),
      delay: delay.roll(),
      lag,
      resources,
      resourcesTotal: info.length,
      openFds: process.platform === "linux" ? countOpenFds() : 0
    }
    current = taken
    queueMicrotask(() => current = undefined) // a snapshot reads every series synchronously
    return taken
  }

  const registrations: Array<Metric.Registration> = []
  const gauge = (metric: Metric.Gauge<number>, read: (sample: Sample) => number) =>
    registrations.push(Metric.registerUnsafe(metric, context, {
      get: () => ({ value: read(sample()) }),
      update: () => {},
      modify: () => {}
    }))
  const counter = (metric: Metric.Counter<number>, read: (sample: Sample) => number) =>
    registrations.push(Metric.registerUnsafe(metric, context, {
      get: () => ({ count: read(sample()), incremental: false }),
      update: () => {},
      modify: () => {}
    }))
  const types = new Set<string>()
  function byType(type: string): void {
    if (types.has(type)) return
    types.add(type)
    gauge(Metric.withAttributes(activeResources, { type }), (s) => s.resources.get(type) ?? 0)
  }

  counter(cpuUserSeconds, (s) => s.cpu.user / 1e6)
  counter(cpuSystemSeconds, (s) => s.cpu.system / 1e6)
  counter(cpuSeconds, (s) => (s.cpu.user + s.cpu.system) / 1e6)
  const startedAt = performance.timeOrigin / 1000
  gauge(startTime, () => startedAt)
  gauge(residentMemory, (s) => s.memory.rss)
  gauge(heapTotal, (s) => s.memory.heapTotal)
  gauge(heapUsed, (s) => s.memory.heapUsed)
  gauge(externalMemory, (s) => s.memory.external)
  counter(loopActiveSeconds, (s) => s.loop.active / 1000)
  counter(loopIdleSeconds, (s) => s.loop.idle / 1000)
  gauge(loopLag, (s) => s.lag)
  for (const stat of Object.keys(loopDelay) as Array<keyof typeof loopDelay>) {
    gauge(loopDelay[stat], (s) => s.delay[stat])
  }
  gauge(activeResourcesTotal, (s) => s.resourcesTotal)
  if (process.platform === "linux") {
    gauge(openFds, (s) => s.openFds)
    const max = readMaxFds()
    if (max !== undefined) gauge(maxFds, () => max)
  }
  const [major, minor, patch] = process.versions.node.split(".")
  gauge(Metric.withAttributes(versionInfo, { version: process.version, major: major!, minor: minor!, patch: patch! }), () => 1)

  const collections = new Map<string, Metric.Histogram<number>>()
  for (const kind of gcKinds.values()) {
    const series = Metric.withAttributes(gcDuration, { kind })
    series.valueUnsafe(context) // from zero
    collections.set(kind, series)
  }
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      // a gc entry's `detail` is `{ kind, flags }`; the types know it only for marks and measures
      const kind = gcKinds.get((entry as { readonly detail?: { readonly kind?: number } }).detail?.kind ?? -1)
      if (kind !== undefined) collections.get(kind)!.updateUnsafe(entry.duration / 1000, context)
    }
  })
  observer.observe({ entryTypes: ["gc"] })

  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      observer.disconnect()
      delay.close()
      for (const registration of registrations) registration.remove()
    })
  )
}))
