// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, runMain } from "@taskmesh/platform";
import { loadTasksConfig } from "./config.js";
import { build } from "./server.js";

runMain("tasks", async () => {
  const config = loadTasksConfig();
  const logger = createLogger("tasks", { level: config.logLevel });
  const app = build(config, { logger });
  const { grpcPort } = await app.listen();
  logger.info({ grpcPort, db: config.dbPath, jwks: config.jwksUrl }, "tasks serving");
  return { running: app, logger };
});
