// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, runMain } from "@taskmesh/platform";
import { loadRemindersConfig } from "./config.js";
import { build } from "./server.js";

runMain("reminders", async () => {
  const config = loadRemindersConfig();
  const logger = createLogger("reminders", { level: config.logLevel });
  const app = build(config, { logger });
  const { grpcPort } = await app.listen();
  logger.info({ grpcPort, db: config.dbPath, nats: config.natsServers }, "reminders serving");
  return { running: app, logger };
});
