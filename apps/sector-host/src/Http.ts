/**
 * The HTTP API of the host (../../shared/DESIGN.md "HTTP API of sector-host"): health and readiness so far.
 */
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { Lifecycle } from "./Lifecycle.ts"

/** `GET /healthz`: the process is alive and serving. */
const healthz = HttpRouter.add("GET", "/healthz", HttpServerResponse.jsonUnsafe({ status: "ok" }))

/** `GET /readyz`: 200 once started, 503 while starting or shutting down. */
const readyz = HttpRouter.add(
  "GET",
  "/readyz",
  Effect.gen(function*() {
    const lifecycle = yield* Lifecycle
    const phase = yield* lifecycle.phase
    return HttpServerResponse.jsonUnsafe({ status: phase }, { status: phase === "ready" ? 200 : 503 })
  })
)

/** Every route of the API. */
export const routes = Layer.mergeAll(healthz, readyz)
