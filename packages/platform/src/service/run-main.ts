import { ConfigError } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import { shutdownTelemetry } from "../telemetry/telemetry.js";

export interface Running {
  /** Stop accepting, drain in-flight work, close connections and databases. */
  shutdown(): Promise<void>;
}

/**
 * The tail of every main.ts: starts the service, and on SIGTERM/SIGINT shuts it down once
 * (a second signal forces exit). A ConfigError stops the process with exit code 2 and a message
 * naming the variable; any other start-up failure exits 1.
 */
export function runMain(name: string, start: () => Promise<{ running: Running; logger: Logger }>): void {
  start().then(
    ({ running, logger }) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          logger.warn({ signal }, "second signal, exiting now");
          process.exit(1);
        }
        stopping = true;
        logger.info({ signal }, "shutting down");
        running
          .shutdown()
          // The spans of the last requests are still in the batch processor: export them.
          .then(() => shutdownTelemetry().catch((err) => logger.warn({ err }, "telemetry shutdown failed")))
          .then(
            () => {
              logger.info("stopped");
              process.exit(0);
            },
            (err) => {
              logger.error({ err }, "shutdown failed");
              process.exit(1);
            },
          );
      };
      process.on("SIGTERM", () => stop("SIGTERM"));
      process.on("SIGINT", () => stop("SIGINT"));
    },
    (err) => {
      if (err instanceof ConfigError) {
        process.stderr.write(`${name}: ${err.message}\n`);
        process.exit(2);
      }
      process.stderr.write(`${name}: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : err}\n`);
      process.exit(1);
    },
  );
}
