/**
 * What a fault test watches while it runs: the host's Prometheus metrics, its resident memory, and its readiness
 * over time.
 */
import * as fs from "node:fs/promises"

/** Sums every sample of `name` (all label sets) in a Prometheus text exposition; 0 if absent. */
export const metric = (text: string, name: string, labels: Record<string, string> = {}): number => {
  let sum = 0
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (match === null || match[1] !== name) continue
    const labelText = match[2] ?? ""
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) sum += Number(match[3])
  }
  return sum
}

/** The host's `/metrics` now. */
export const scrape = async (baseUrl: string): Promise<string> => (await fetch(`${baseUrl}/metrics`)).text()

/** Resident set size of a process (bytes), from `/proc/<pid>/status`. */
export const rss = async (pid: number): Promise<number> => {
  const status = await fs.readFile(`/proc/${pid}/status`, "utf8")
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  if (match === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1]) * 1024
}

/** Samples a process's RSS every `everyMs` until stopped; `peak` is the highest seen. */
export const watchRss = (pid: number, everyMs = 100) => {
  let peak = 0
  const timer = setInterval(() => {
    rss(pid).then((bytes) => {
      peak = Math.max(peak, bytes)
    }, () => {})
  }, everyMs)
  return {
    peak: () => peak,
    stop: () => clearInterval(timer)
  }
}

/** One `/readyz` answer at a moment. */
export interface Readiness {
  readonly at: number
  readonly status: number
  readonly circuit: string | undefined
}

/** Polls `/readyz` every `everyMs`, recording each answer (a failed request is recorded as status 0). */
export const watchReadiness = (baseUrl: string, everyMs = 100) => {
  const seen: Array<Readiness> = []
  let running = true
  const loop = (async () => {
    while (running) {
      const at = Date.now()
      try {
        const response = await fetch(`${baseUrl}/readyz`)
        // the 200 body and the 503 problem both carry `circuit`
        const body = (await response.json()) as { circuit?: { state?: string } }
        seen.push({ at, status: response.status, circuit: body.circuit?.state })
      } catch {
        seen.push({ at, status: 0, circuit: undefined })
      }
      await new Promise((r) => setTimeout(r, everyMs))
    }
  })()
  return {
    seen,
    stop: async () => {
      running = false
      await loop
    }
  }
}

export const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`
