// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, runMain } from "@taskmesh/platform";
import { loadUsersConfig } from "./config.js";
import { build } from "./server.js";

runMain("users", async () => {
  const config = loadUsersConfig();
  const logger = createLogger("users", { level: config.logLevel });
  const app = build(config, { logger });
  const { grpcPort, httpPort } = await app.listen();
  logger.info({ grpcPort, jwksPort: httpPort, db: config.dbPath }, "users serving");
  return { running: app, logger };
});
