/**
 * The status page in a real browser: headless Chromium (Debian's `chromium` package, driven by `playwright-core`)
 * opens `GET /` of the real host process on PostgreSQL, with `AUTH_TOKEN` set and under HTTP load. The page asks for
 * the token, then its figures move (the accepted ops/s of `[data-metric="ops-accepted-per-second"]` changes and is
 * above 0), the drill-down to a busy sector shows its status and dead letters, and the console stays free of errors.
 * It saves a screenshot (`STATUS_PAGE_SCREENSHOT`, else the system's temporary directory; `docs/status-page.png` is
 * one, taken with `STATUS_PAGE_SCREENSHOT_AFTER=40000`). Around it, over plain HTTP: the page needs no token, its stream does, and streams past
 * `MAX_STATUS_SUBSCRIBERS` get 503.
 *
 * The browser must be installed (`.ci/run` installs it where it is missing): without it this file fails with one
 * line saying so, it is never skipped.
 */
import { assert, describe, it } from "@effect/vitest"
import { Port } from "@sectors/pg-embedded"
import { TestDatabase } from "@sectors/pg-embedded/testing"
import { Effect, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type Browser, chromium } from "playwright-core"
import { scopedExactly } from "../support/HostProcess.ts"

/** Where Debian's `chromium` package puts the browser. */
const executablePath = "/usr/bin/chromium"
if (!fs.existsSync(executablePath)) {
  throw new Error(
    `the status page browser test needs Chromium at ${executablePath}: install Debian's chromium package (apt-get install -y chromium; .ci/run does it where it is missing)`
  )
}

/** What the functions run in the page use of it (the tests' TypeScript has no DOM library). */
declare const document: { querySelector(selector: string): { readonly textContent: string | null } | null }

const token = "status-page-test-token"
const auth = { authorization: `Bearer ${token}` }

/** Posts small batches of ops to a few sectors, back to back, with the token, until the scope closes. */
const load = (baseUrl: string, sectors: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let running = true
      const loops = Array.from({ length: sectors }, async (_, sector) => {
        for (let n = 0; running; n++) {
          const ops = Array.from({ length: 20 }, (_, i) => ({
            type: "set",
            entity: (n * 20 + i) % 50,
            component: "position",
            data: { x: n, y: i }
          }))
          await fetch(`${baseUrl}/sectors/${sector}/ops`, {
            method: "POST",
            headers: { ...auth, "content-type": "application/json" },
            body: JSON.stringify({ ops })
          }).then((response) => response.arrayBuffer(), () => undefined)
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      })
      return () => {
        running = false
        return Promise.all(loops)
      }
    }),
    (stop) => Effect.promise(stop)
  )

/** A headless Chromium, closed with the scope. */
const browser = Effect.acquireRelease(
  Effect.promise(() => chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] })),
  (browser: Browser) => Effect.promise(() => browser.close())
)

/** Opens the stream with the token; resolves once its headers arrived, with a way to close it. */
/**
 * Opens a status stream; `joined`: reads it until its first sample, so that it holds its place (a stream takes its
 * place when its body starts, after the 200: one that loses the race for the last place ends at once).
 */
const openStream = async (baseUrl: string, joined = false) => {
  const abort = new AbortController()
  const response = await fetch(`${baseUrl}/status/stream`, { headers: auth, signal: abort.signal })
  if (joined && response.ok && response.body !== null) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
    let text = ""
    while (!text.includes("data: ")) {
      const { done, value } = await reader.read()
      if (done) break
      text += value
    }
  }
  return { status: response.status, close: () => abort.abort() }
}

describe("the status page", () => {
  it.live("shows the host live in a real browser, with AUTH_TOKEN, under load", () =>
    Effect.gen(function*() {
      const url = yield* TestDatabase.fresh(TestDatabase.serverUrl())
      const port = yield* Port.free
      const host = yield* scopedExactly({
        DATABASE_URL: Redacted.value(url),
        PORT: String(port),
        AUTH_TOKEN: token,
        MAX_STATUS_SUBSCRIBERS: "2",
        LOG_FORMAT: "json"
      })
      const baseUrl = host.baseUrl

      // the page holds no data and needs no token; the stream does
      const page = yield* Effect.promise(() => fetch(`${baseUrl}/`))
      assert.strictEqual(page.status, 200)
      assert.include(page.headers.get("content-type") ?? "", "text/html")
      assert.include(page.headers.get("content-security-policy") ?? "", "default-src 'none'")
      yield* Effect.promise(() => page.text())
      const anonymous = yield* Effect.promise(() => fetch(`${baseUrl}/status/stream`))
      assert.strictEqual(anonymous.status, 401)
      yield* Effect.promise(() => anonymous.text())

      yield* load(baseUrl, 4)
      const chromium = yield* browser
      const tab = yield* Effect.promise(() => chromium.newPage({ viewport: { width: 1400, height: 1100 } }))
      const errors: Array<string> = []
      tab.on("console", (message) => {
        if (message.type() === "error") errors.push(message.text())
      })
      tab.on("pageerror", (error) => errors.push(String(error)))

      yield* Effect.promise(async () => {
        await tab.goto(`${baseUrl}/`)
        // the page asks for the token once
        await tab.locator("#login").waitFor({ state: "visible", timeout: 5000 })
        await tab.fill("#token", token)
        await tab.click("#login button")
      })

      // the figures move: the accepted ops/s is a number above 0, and it changes
      const metric = `[data-metric="ops-accepted-per-second"]`
      const first = yield* Effect.promise(async () => {
        await tab.waitForFunction((selector) => Number(document.querySelector(selector)?.textContent) > 0, metric, {
          timeout: 10_000
        })
        return Number(await tab.textContent(metric))
      })
      assert.isAbove(first, 0)
      yield* Effect.promise(() =>
        tab.waitForFunction(
          ([selector, before]) => {
            const now = Number(document.querySelector(selector as string)?.textContent)
            return now > 0 && now !== before
          },
          [metric, first] as const,
          { timeout: 10_000 }
        )
      )

      // the stream is bounded: the page holds one place of two, a second stream gets the other, a third 503
      const second = yield* Effect.promise(() => openStream(baseUrl, true))
      assert.strictEqual(second.status, 200)
      const third = yield* Effect.promise(() => openStream(baseUrl))
      assert.strictEqual(third.status, 503)
      second.close()
      third.close()

      // the drill-down: a busy sector's status and its dead letters
      const drilled = yield* Effect.promise(async () => {
        const row = tab.locator("#busiest tr[data-sector]").first()
        await row.waitFor({ timeout: 5000 })
        const sector = await row.getAttribute("data-sector")
        await row.click()
        await tab.locator(`#drill[data-sector="${sector}"]`).waitFor({ timeout: 5000 })
        return {
          sector,
          status: await tab.textContent("#drill-status"),
          letters: await tab.textContent("#drill-letters")
        }
      })
      assert.include(drilled.status ?? "", "held bythis host")
      assert.include(drilled.status ?? "", "persistedSeq")
      assert.include(drilled.status ?? "", "epoch")
      assert.include(drilled.letters ?? "", "no dead letters")

      const screenshot = process.env.STATUS_PAGE_SCREENSHOT ?? path.join(os.tmpdir(), "sectors-status-page.png")
      yield* Effect.promise(async () => {
        // a little more on the charts (longer for the one in docs/: STATUS_PAGE_SCREENSHOT_AFTER, ms)
        await tab.waitForTimeout(Number(process.env.STATUS_PAGE_SCREENSHOT_AFTER ?? 1500))
        await tab.screenshot({ path: screenshot, fullPage: true })
      })
      assert.isTrue(fs.statSync(screenshot).size > 10_000)
      assert.deepStrictEqual(errors, [])
    }).pipe(Effect.scoped), { timeout: 90_000 })
})
