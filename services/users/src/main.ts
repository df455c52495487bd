// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, FAULT_ENV, faultDrillHooks, runMain } from "@taskmesh/platform";
import { DELETION_STEPS } from "./account-deletion-saga.js";
import { loadUsersConfig } from "./config.js";
import { build } from "./server.js";

runMain("users", async () => {
  const config = loadUsersConfig();
  const logger = createLogger("users", { level: config.logLevel });
  // Fault drills for the fault and chaos suites (off unless TASKMESH_FAULT is set; see fault-drill.ts).
  const faults = faultDrillHooks(process.env[FAULT_ENV], (msg) => logger.warn(msg), DELETION_STEPS);
  const app = build(config, { logger, faults });
  const { grpcPort, httpPort } = await app.listen();
  logger.info({ grpcPort, jwksPort: httpPort, db: config.dbPath }, "users serving");
  return { running: app, logger };
});
