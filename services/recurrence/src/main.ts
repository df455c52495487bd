// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, runMain } from "@taskmesh/platform";
import { loadRecurrenceConfig } from "./config.js";
import { build } from "./server.js";

runMain("recurrence", async () => {
  const config = loadRecurrenceConfig();
  const logger = createLogger("recurrence", { level: config.logLevel });
  const app = build(config, { logger });
  const { grpcPort } = await app.listen();
  logger.info({ grpcPort, db: config.dbPath, nats: config.natsServers, tasks: config.tasksAddr }, "recurrence serving");
  return { running: app, logger };
});
