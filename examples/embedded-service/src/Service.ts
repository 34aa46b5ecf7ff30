/**
 * The service as one layer: its routes, served over the fleet, over a `SectorHost`. What it leaves open is what
 * differs between production and tests — the HTTP server, the `SectorSink` (PostgreSQL or memory), the
 * `SectorsConfig` — so that `main.ts` and the tests wire the same service.
 *
 * Closing the layer stops the host in order: intake stops, every accepted move is flushed (within
 * `SHUTDOWN_TIMEOUT`), then the sink closes.
 */
import { SectorHost } from "@sectors/core"
import { Layer } from "effect"
import { HttpRouter } from "effect/http"
import * as Fleet from "./Fleet.ts"
import * as Routes from "./Routes.ts"

/** The routes served on the `HttpServer` in context, over a fleet on a host of its own. */
export const layer = HttpRouter.serve(Routes.layer, { disableListenLog: true }).pipe(
  Layer.provide(Fleet.layer),
  Layer.provideMerge(SectorHost.layer)
)
