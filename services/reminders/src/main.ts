// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, FAULT_ENV, faultDrillHooks, runMain } from "@taskmesh/platform";
import { loadRemindersConfig } from "./config.js";
import { build } from "./server.js";

runMain("reminders", async () => {
  const config = loadRemindersConfig();
  const logger = createLogger("reminders", { level: config.logLevel });
  // Fault drills for the fault and chaos suites (off unless TASKMESH_FAULT is set; see fault-drill.ts).
  const faults = faultDrillHooks(process.env[FAULT_ENV], (msg) => logger.warn(msg));
  const app = build(config, { logger, faults });
  const { grpcPort } = await app.listen();
  logger.info({ grpcPort, db: config.dbPath, nats: config.natsServers }, "reminders serving");
  return { running: app, logger };
});
