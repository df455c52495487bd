// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, FAULT_ENV, faultDrillHooks, runMain } from "@taskmesh/platform";
import { loadAnalyticsConfig } from "./config.js";
import { build } from "./server.js";

runMain("analytics", async () => {
  const config = loadAnalyticsConfig();
  const logger = createLogger("analytics", { level: config.logLevel });
  // Fault drills for the fault and chaos suites (off unless TASKMESH_FAULT is set; see fault-drill.ts).
  const faults = faultDrillHooks(process.env[FAULT_ENV], (msg) => logger.warn(msg));
  const app = build(config, { logger, faults });
  const { grpcPort } = await app.listen();
  logger.info(
    { grpcPort, db: config.dbPath, nats: config.natsServers, generation: app.generation },
    "analytics serving",
  );
  return { running: app, logger };
});
