/**
 * The live status page (`GET /`) and the stream it draws from (`GET /status/stream`), the README's "Status page".
 *
 * The page is one self-contained HTML document — its CSS and JavaScript inline, its charts drawn by a few lines of
 * its own on `<canvas>`, nothing fetched from anywhere but this host (its Content-Security-Policy allows nothing
 * else). It holds no data, so it is served without a token. Everything it shows arrives over the stream: server-sent
 * events, one `Status.Sample` a second, from a `StatusFeed` whose sampling runs only while a stream is open — a host
 * nobody watches arms no timer for it. The drill-down to one sector reads the existing `GET /sectors/{id}` and
 * `GET /sectors/{id}/dead-letters`, and which host holds it `GET /status/sectors/{id}` (in a cluster, the runner its
 * shard is assigned to).
 *
 * With `AUTH_TOKEN` set the stream and the data need the token like every other route (`Guard`): the page asks for it
 * once, keeps it in `sessionStorage` (this tab only, gone when it closes) and sends it as `Authorization: Bearer`
 * — it reads the stream with `fetch` and a body reader, not `EventSource`, which cannot send headers, so the token
 * never travels in a URL (`docs/SECURITY.md`).
 *
 * Streams are bounded: at most `maxStatusSubscribers` at once, one more gets 503 `too-many-subscribers` with
 * `Retry-After`. A stream ends when the host starts shutting down, so it never holds the shutdown up.
 */
import { Effect, Stream } from "effect"
import { HttpServerResponse } from "effect/http"
import * as crypto from "node:crypto"
import { HostConfig } from "./HostConfig.ts"
import { Lifecycle } from "./Lifecycle.ts"
import * as Problem from "./Problem.ts"
import * as Request from "./Request.ts"
import { Sectors } from "./Sectors.ts"
import * as Status from "./Status.ts"
import * as StatusFeed from "./StatusFeed.ts"

/** Samples kept for a newcomer: five minutes of charts. */
export const historySamples = 300

/** The path of the stream. */
export const streamPath = "/status/stream" as const

/** 503: `maxStatusSubscribers` streams are open already. */
export const tooManySubscribers = (maxStatusSubscribers: number): Problem.Problem =>
  new Problem.Problem({
    status: 503,
    type: "urn:sectors:problem:too-many-subscribers",
    title: "Too many status subscribers",
    detail: `${maxStatusSubscribers} status streams are open already; retry later`,
    extensions: { maxStatusSubscribers },
    headers: { "retry-after": "5" }
  })

/** One sample as a server-sent event. */
const event = (sample: Status.Sample) => `event: sample\ndata: ${JSON.stringify(sample)}\n\n`

/**
 * The routes `GET /`, `GET /status/stream` and `GET /status/sectors/{sector}`, as `Http`'s table takes them. The feed's sampling fiber, while it
 * runs, lives in the scope this is built in (the router's).
 */
export const endpoints = Effect.gen(function*() {
  const config = yield* HostConfig
  const lifecycle = yield* Lifecycle
  const sectors = yield* Sectors
  const feed = yield* StatusFeed.make({
    sampler: Status.sampler,
    interval: "1 second",
    maxSubscribers: config.maxStatusSubscribers,
    history: historySamples,
    buffer: 8
  })
  const page = HttpServerResponse.text(html(config.authToken.length > 0), {
    contentType: "text/html; charset=utf-8",
    headers: pageHeaders
  })

  /** `GET /`: the page. */
  const index = Effect.fn("StatusPage.index")(function*() {
    return page
  })

  /** `GET /status/stream`: one sample a second as server-sent events, for as long as the client reads. */
  const stream = Effect.fn("StatusPage.stream")(function*() {
    if (feed.subscribers() >= feed.maxSubscribers) return Problem.toResponse(tooManySubscribers(feed.maxSubscribers))
    const body = Stream.make(": sectors status\n\n").pipe(
      Stream.concat(Stream.map(feed.subscribe, event)),
      // the bound is taken when the stream starts: a stream that lost the race for the last place ends at once
      Stream.catchTag("TooManySubscribers", () => Stream.empty),
      Stream.interruptWhen(lifecycle.awaitShutdown),
      Stream.encodeText
    )
    return HttpServerResponse.stream(body, {
      contentType: "text/event-stream",
      headers: { "cache-control": "no-store", "x-accel-buffering": "no" }
    })
  })

  /**
   * `GET /status/sectors/{sector}`: which host holds a sector, for the drill-down — this one when standalone, in a
   * cluster the runner its shard is assigned to (`heldBy`, `null` while no runner serves it) and whether that is this
   * host (`here`).
   */
  const holder = Effect.fn("StatusPage.holder")(function*() {
    const { sector } = yield* Request.pathIds("sector")
    if (sectors.mode._tag === "Standalone") return HttpServerResponse.jsonUnsafe({ sector, mode: "standalone", here: true })
    const owner = yield* sectors.mode.ownerOf(sector)
    const { runner } = yield* sectors.mode.view
    return HttpServerResponse.jsonUnsafe({ sector, mode: "cluster", heldBy: owner ?? null, here: owner === runner })
  }, Effect.catch((error: Problem.KnownError | Problem.Problem) => Problem.answer(error)))

  return [
    { method: "GET" as const, path: "/" as const, handler: index },
    { method: "GET" as const, path: streamPath, handler: stream },
    { method: "GET" as const, path: "/status/sectors/:sector" as const, handler: holder }
  ]
})

// ---- the page ----

const style = `
:root{--bg:#0f1419;--panel:#171e26;--line:#2a3440;--text:#d8dee6;--dim:#8a97a6;--ok:#4caf7d;--bad:#e06c6c;--warn:#e0b050}
*{box-sizing:border-box}body{margin:0;font:13px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--text)}
header{display:flex;align-items:baseline;gap:16px;padding:12px 18px;border-bottom:1px solid var(--line)}
h1{font-size:16px;margin:0}h2{font-size:13px;margin:0 0 6px;color:var(--dim);font-weight:600}
.big{font-size:22px;font-weight:700}.dim{color:var(--dim)}main{padding:12px 18px;display:grid;gap:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:10px}
canvas{width:100%;height:120px;display:block}.legend span{margin-right:10px;white-space:nowrap}
.legend i{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:4px}
table{border-collapse:collapse;width:100%}td,th{padding:3px 6px;text-align:right;border-bottom:1px solid var(--line)}
th:first-child,td:first-child{text-align:left}tbody tr{cursor:pointer}tbody tr:hover{background:#1f2832}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:0}
dt{color:var(--dim)}dd{margin:0}#login{display:none}#login.shown{display:block}input,button{font:inherit}
pre{white-space:pre-wrap;margin:0}.hidden{display:none}.gap{margin-top:8px}.wide{grid-column:span 2}
dd{overflow-wrap:anywhere}@media(max-width:720px){.wide{grid-column:auto}}
`

const script = `
"use strict";
const HISTORY = ${historySamples};
const authRequired = document.documentElement.dataset.auth === "required";
const tokenKey = "sectors.token";
const $ = (id) => document.getElementById(id);
const samples = [];
let latest = null;

const headers = () => {
  const token = sessionStorage.getItem(tokenKey);
  return token ? { authorization: "Bearer " + token } : {};
};
const setConnection = (text, cls) => { const el = $("connection"); el.textContent = text; el.className = cls; };

function askToken(message) {
  $("login").classList.add("shown");
  $("login-message").textContent = message;
  $("token").focus();
}
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(tokenKey, $("token").value.trim());
  $("token").value = "";
  $("login").classList.remove("shown");
  connect();
});

async function connect() {
  if (authRequired && !sessionStorage.getItem(tokenKey)) return askToken("This host needs its token (AUTH_TOKEN).");
  setConnection("connecting…", "dim");
  let response;
  try {
    response = await fetch("${streamPath}", { headers: headers(), cache: "no-store" });
  } catch (e) {
    return retry("host unreachable");
  }
  if (response.status === 401) {
    sessionStorage.removeItem(tokenKey);
    return askToken("The token was refused: enter it again.");
  }
  if (!response.ok || !response.body) return retry("stream refused (" + response.status + ")", 5000);
  setConnection("live", "ok");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\\n\\n")) >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = block.split("\\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\\n");
        if (data) receive(JSON.parse(data));
      }
    }
  } catch (e) {}
  retry("stream ended");
}
function retry(why, delay = 2000) {
  setConnection(why + ", reconnecting…", "warn");
  setTimeout(connect, delay);
}

function receive(sample) {
  if (latest && sample.at <= latest.at) return;
  if (latest && sample.at - latest.at > 5000) samples.length = 0;
  samples.push(sample);
  if (samples.length > HISTORY) samples.splice(0, samples.length - HISTORY);
  latest = sample;
  render();
}

const colors = ["#5aa9e6", "#7bd389", "#e0b050", "#e06c6c", "#b48ead", "#8fbcbb"];

/** A figure in a few characters: 12.3, 45.6k, 7.8M; "–" for none. */
function fmt(n) {
  if (n === null || n === undefined) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n * 10) / 10);
}

function bytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1024) return (n / 1024).toFixed(1) + " KiB";
  return n + " B";
}

function duration(s) {
  if (s >= 86400) return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
  if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return s + "s";
}

/** Draws lines of the last samples on a canvas (0 at the bottom, the largest value near the top) and its legend. */
function chart(id, series, unit = "", format = fmt) {
  const canvas = $(id);
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max <= 0 ? 1 : max * 1.1;
  const left = 48, right = 4, top = 10, bottom = 14;
  const span = Math.max(samples.length, 60); // seconds across: at least a minute
  const xOf = (j, count) => left + (w - left - right) * (1 - (count - 1 - j) / (span - 1));
  const yOf = (v) => top + (1 - v / max) * (h - top - bottom);
  g.font = "10px system-ui"; g.fillStyle = "#8a97a6"; g.strokeStyle = "#2a3440"; g.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const y = yOf(max * f);
    g.beginPath(); g.moveTo(left, y); g.lineTo(w - right, y); g.stroke();
    g.fillText(format(max * f), 2, y + 3);
  }
  g.fillText("−" + span + " s", left, h - 2);
  g.fillText("now", w - right - 20, h - 2);
  series.forEach((s, i) => {
    g.strokeStyle = s.color || colors[i % colors.length]; g.lineWidth = 1.5; g.beginPath();
    let drawing = false;
    s.values.forEach((v, j) => {
      if (v === null) { drawing = false; return; }
      if (drawing) g.lineTo(xOf(j, s.values.length), yOf(v)); else g.moveTo(xOf(j, s.values.length), yOf(v));
      drawing = true;
    });
    g.stroke();
  });
  $(id + "-legend").replaceChildren(...series.map((s, i) => {
    const item = element("span"), swatch = element("i");
    swatch.style.background = s.color || colors[i % colors.length];
    item.append(swatch, s.label + " " + format(s.values[s.values.length - 1] ?? null) + unit);
    return item;
  }));
}

/** An element; its text is text (nothing from the host is ever read as HTML). */
function element(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = String(text);
  if (className) el.className = className;
  return el;
}
const row = (cells) => { const tr = element("tr"); tr.append(...cells.map((c) => element("td", c))); return tr; };
const text = (id, value, className) => { const el = $(id); el.textContent = value; el.className = className || ""; };
const series = (label, f, color) => ({ label, values: samples.map(f), color });
const clock = (millis) => new Date(millis).toLocaleTimeString();

function render() {
  const s = latest;
  text("ops-accepted", String(s.opsAcceptedPerSecond), "big");
  chart("c-ops", [series("accepted", (x) => x.opsAcceptedPerSecond), series("persisted", (x) => x.opsPersistedPerSecond)], "/s");
  chart("c-batches", [series("batches", (x) => x.batchesPerSecond), series("commits", (x) => x.commitsPerSecond)], "/s");
  chart("c-mean", [series("mean batch", (x) => x.meanBatch)], " ops");
  chart("c-triggers", Object.keys(s.triggersPerSecond).map((k) => series(k, (x) => x.triggersPerSecond[k])), "/s");
  chart("c-collapse", [series("collapsed", (x) => x.collapsePercent)], " %");
  chart("c-latency", [series("p50", (x) => x.durableP50Millis), series("p99", (x) => x.durableP99Millis)], " ms");
  chart("c-buffer", [series("buffered", (x) => x.bufferedBytes), series("budget", (x) => x.bufferBudgetBytes, "#8a97a6")], "", bytes);
  chart("c-mailbox", [series("mailbox depth", (x) => x.mailboxDepth)]);

  const { database, circuit, readiness, policy, residency } = s.state;
  text("st-db", database.reachable ? "reachable" : "unreachable since " + clock(database.downSince), database.reachable ? "ok" : "bad");
  text("st-circuit", circuit.state + (circuit.until ? " until " + clock(circuit.until) : ""), circuit.state === "Closed" ? "ok" : "warn");
  text("st-ready", readiness.ready ? "ready" : "not ready: " + readiness.reason, readiness.ready ? "ok" : "bad");
  text("st-uptime", duration(s.state.uptimeSeconds));
  text("st-profile", s.state.profile + " (min " + policy.minBatch + " / " + policy.maxWaitMillis + " ms / max " + policy.maxBatch + ")");
  text("st-residency", residency.active + " of " + residency.maxActiveSectors);

  const busiest = s.busiest.map((b) => {
    const tr = row([b.sector, b.phase, b.pending, b.mailbox, b.lag, b.epoch ?? "–"]);
    tr.dataset.sector = b.sector;
    return tr;
  });
  $("busiest").replaceChildren(...(busiest.length > 0 ? busiest : [row(["no resident sector"])]));

  const c = s.cluster;
  $("cluster").classList.toggle("hidden", !c);
  if (c) {
    text("cl-runner", c.runner + " · " + c.shardsPerGroup + " shards · " + c.handoffsTotal + " handoffs (" + c.handoffsPerSecond + "/s)");
    $("cl-runners").replaceChildren(...c.runners.map((r) => {
      const tr = row([r.address + (r.address === c.runner ? " (this host)" : ""), r.healthy ? "healthy" : "unhealthy", r.shards]);
      tr.children[1].className = r.healthy ? "ok" : "bad";
      return tr;
    }));
    text("cl-resident", c.resident.join(", ") || "none");
  }
}

$("busiest").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-sector]");
  if (tr) drill(tr.dataset.sector);
});
$("drill-form").addEventListener("submit", (e) => { e.preventDefault(); drill($("drill-id").value.trim()); });

/** Shows one sector: its status, who holds it, its dead letters (each read with the token). */
async function drill(id) {
  const panel = $("drill");
  panel.dataset.sector = "";
  $("drill-title").textContent = "sector " + id;
  $("drill-status").textContent = "loading…";
  $("drill-letters").replaceChildren();
  const read = (path) => fetch(path, { headers: headers() }).then((r) => r.json());
  const sector = encodeURIComponent(id);
  let status, letters, holder;
  try {
    [status, letters, holder] = await Promise.all([
      read("/sectors/" + sector), read("/sectors/" + sector + "/dead-letters"), read("/status/sectors/" + sector)
    ]);
  } catch (e) {
    $("drill-status").textContent = "could not read sector " + id;
    return;
  }
  if (status.title && status.detail) { $("drill-status").textContent = status.title + ": " + status.detail; return; }
  const held = holder.mode !== "cluster" ? "this host"
    : holder.heldBy === null ? "no runner yet"
    : "runner " + holder.heldBy + (holder.here ? " (this host)" : "");
  const facts = [
    ["held by", held], ["phase", status.phase], ["epoch", status.epoch],
    ["mailbox", status.mailboxDepth + " of " + status.mailboxCapacity],
    ["pending", status.pendingOps + " ops, " + status.pendingKeys + " keys of " + status.maxPendingKeys],
    ["in flight", status.inFlightOps], ["lastSeq", status.lastSeq], ["persistedSeq", status.persistedSeq],
    ["lag", status.lastSeq - status.persistedSeq], ["persisted at", status.persistedAt ?? "–"],
    ["entities", status.entities], ["awake", status.awake], ["circuit", status.circuit && status.circuit.state],
    ["counters", JSON.stringify(status.counters)]
  ];
  const list = element("dl");
  for (const [name, value] of facts) list.append(element("dt", name), element("dd", value));
  $("drill-status").replaceChildren(list);
  const dead = letters.deadLetters || [];
  if (dead.length === 0) {
    $("drill-letters").replaceChildren(element("span", "no dead letters", "dim"));
  } else {
    const table = element("table"), head = element("tr"), body = element("tbody");
    head.append(...["seq", "code", "error", "at"].map((h) => element("th", h)));
    body.append(...dead.map((l) => row([l.seq, l.code ?? "", l.error, l.at])));
    table.append(head, body);
    $("drill-letters").replaceChildren(table);
  }
  panel.dataset.sector = id;
}


connect();
`

const chartPanel = (id: string, title: string) =>
  `<div class="panel"><h2>${title}</h2><div class="legend" id="${id}-legend"></div><canvas id="${id}"></canvas></div>`

/** The document; `auth` says whether the page must ask for a token before opening the stream. */
const html = (auth: boolean) => `<!doctype html>
<html lang="en" data-auth="${auth ? "required" : "none"}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sectors · host status</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>
<body>
<header>
  <h1>sectors · host status</h1>
  <span><span class="big" id="ops-accepted" data-metric="ops-accepted-per-second">0</span> <span class="dim">ops/s accepted</span></span>
  <span id="connection" class="dim">connecting…</span>
</header>
<main>
  <form id="login" class="panel">
    <h2>Token</h2>
    <p id="login-message"></p>
    <input id="token" type="password" autocomplete="off" placeholder="AUTH_TOKEN" size="40">
    <button type="submit">Connect</button>
    <span class="dim">kept for this tab only (sessionStorage)</span>
  </form>
  <div class="panel">
    <h2>State</h2>
    <dl>
      <dt>database</dt><dd id="st-db">–</dd>
      <dt>circuit</dt><dd id="st-circuit">–</dd>
      <dt>readiness</dt><dd id="st-ready">–</dd>
      <dt>uptime</dt><dd id="st-uptime">–</dd>
      <dt>profile and policy</dt><dd id="st-profile">–</dd>
      <dt>resident sectors</dt><dd id="st-residency">–</dd>
    </dl>
  </div>
  <div class="grid">
    ${chartPanel("c-ops", "Ops per second")}
    ${chartPanel("c-batches", "Batches and commits per second")}
    ${chartPanel("c-mean", "Mean batch size")}
    ${chartPanel("c-triggers", "Batches per second by trigger")}
    ${chartPanel("c-collapse", "Collapsed ops")}
    ${chartPanel("c-latency", "Op→durable (each batch's slowest op)")}
    ${chartPanel("c-buffer", "Buffered bytes against the budget")}
    ${chartPanel("c-mailbox", "Mailbox depth (all sectors)")}
  </div>
  <div class="grid">
    <div class="panel wide">
      <h2>Busiest resident sectors</h2>
      <table><thead><tr><th>sector</th><th>phase</th><th>pending</th><th>mailbox</th><th>lag</th><th>epoch</th></tr></thead>
      <tbody id="busiest"></tbody></table>
      <form id="drill-form"><span class="dim">or sector</span> <input id="drill-id" size="8" inputmode="numeric"> <button type="submit">Show</button></form>
    </div>
    <div class="panel wide" id="drill">
      <h2 id="drill-title">Sector</h2>
      <div id="drill-status" class="dim">click a sector for its status and dead letters</div>
      <h2 class="gap">Dead letters</h2>
      <div id="drill-letters"></div>
    </div>
    <div class="panel wide hidden" id="cluster">
      <h2>Cluster</h2>
      <p id="cl-runner"></p>
      <table><thead><tr><th>runner</th><th>health</th><th>shards</th></tr></thead><tbody id="cl-runners"></tbody></table>
      <p><span class="dim">sectors held by this host:</span> <span id="cl-resident"></span></p>
    </div>
  </div>
</main>
<script>${script}</script>
</body>
</html>
`

const sha256 = (text: string) => `'sha256-${crypto.createHash("sha256").update(text, "utf8").digest("base64")}'`

/**
 * The page's headers: a Content-Security-Policy that lets it run its own inline script and style (by their hashes)
 * and talk to this host only, never be framed (the token form), and no caching.
 */
const pageHeaders = {
  "content-security-policy": [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(style)}`,
    "img-src data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join("; "),
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store"
}
