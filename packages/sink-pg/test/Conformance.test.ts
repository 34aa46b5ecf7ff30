/** The core's sink conformance suite, run against the PostgreSQL sink on a fresh database. */
import { SinkConformance } from "@sectors/core/testing"
import { sinkLayer } from "./support.ts"

SinkConformance.suite("PostgreSQL", sinkLayer())
