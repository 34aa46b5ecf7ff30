import { SinkConformance } from "@sectors/core/testing"
import { sinkLayer } from "./support.ts"

SinkConformance.suite("PostgreSQL", sinkLayer())
