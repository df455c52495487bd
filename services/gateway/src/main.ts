// Telemetry first: tracer, propagation, grpc-js instrumentation and the metrics endpoint (see the platform README).
import "@taskmesh/platform/telemetry-register";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createLogger, runMain } from "@taskmesh/platform";
import { loadGatewayConfig } from "./config.js";
import { build } from "./server.js";

runMain("gateway", async () => {
  const config = loadGatewayConfig();
  const logger = createLogger("gateway", { level: config.logLevel });
  const app = build(config, { logger });
  if (config.webRoot && !existsSync(join(config.webRoot, "index.html")))
    logger.warn({ webRoot: config.webRoot }, "web client not built (no index.html): / says so; run npm run build:web");
  const { grpcPort } = await app.listen();
  logger.info({ port: grpcPort, users: config.usersAddr, tasks: config.tasksAddr }, "gateway serving");
  return { running: app, logger };
});
