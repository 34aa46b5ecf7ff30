import { SectorSink } from "../src/index.ts"
import { SinkConformance } from "../src/testing.ts"

SinkConformance.suite("memory", SectorSink.layerMemory)
