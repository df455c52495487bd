// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, FAULT_ENV, faultDrillHooks, runMain } from "@taskmesh/platform";
import { loadTasksConfig } from "./config.js";
import { build } from "./server.js";

runMain("tasks", async () => {
  const config = loadTasksConfig();
  const logger = createLogger("tasks", { level: config.logLevel });
  // Fault drills for the fault and chaos suites (off unless TASKMESH_FAULT is set; see fault-drill.ts).
  const faults = faultDrillHooks(process.env[FAULT_ENV], (msg) => logger.warn(msg));
  const app = build(config, { logger, faults });
  const { grpcPort } = await app.listen();
  logger.info({ grpcPort, db: config.dbPath, jwks: config.jwksUrl }, "tasks serving");
  return { running: app, logger };
});
