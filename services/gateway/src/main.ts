// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { createLogger, runMain } from "@taskmesh/platform";
import { loadGatewayConfig } from "./config.js";
import { build } from "./server.js";

runMain("gateway", async () => {
  const config = loadGatewayConfig();
  const logger = createLogger("gateway", { level: config.logLevel });
  const app = build(config, { logger });
  const { grpcPort } = await app.listen();
  logger.info({ port: grpcPort, users: config.usersAddr, tasks: config.tasksAddr }, "gateway serving");
  return { running: app, logger };
});
