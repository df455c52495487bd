/**
 * `import "@taskmesh/platform/telemetry-register";` — the FIRST line of a service's main.ts.
 *
 * Starts OpenTelemetry from the environment (see `startTelemetry`): OTEL_SERVICE_NAME (default:
 * the service package's name), OTEL_EXPORTER_OTLP_ENDPOINT (unset: nothing exported),
 * OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, METRICS_PORT (unset: no metrics endpoint),
 * METRICS_HOST; OTEL_SDK_DISABLED=true turns it all off. A malformed value stops the process with
 * exit code 2 and a message naming the variable, like any other configuration error.
 *
 * It does not import grpc-js: the instrumentation patches grpc-js's prototypes when it is
 * required, whichever module loads it first (see grpc-patch.ts), so it also works as
 * `node --import @taskmesh/platform/telemetry-register dist/main.js`.
 */
import { ConfigError } from "../config/config.js";
import { startTelemetry } from "./telemetry.js";

if (process.env.OTEL_SDK_DISABLED?.trim().toLowerCase() !== "true") {
  try {
    const t = await startTelemetry();
    // One line on stderr, before the service's own logs: where this process's traces and metrics go.
    process.stderr.write(
      `${t.serviceName}: traces → ${t.tracesTo}; metrics → ${
        t.metricsPort === undefined ? "off (set METRICS_PORT)" : `http://${metricsHostShown()}:${t.metricsPort}/metrics`
      }\n`,
    );
  } catch (err) {
    const name = process.argv[1] ?? "service";
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

function metricsHostShown(): string {
  return process.env.METRICS_HOST || process.env.HOST || "127.0.0.1";
}
