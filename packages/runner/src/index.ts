export { EXAMPLE_USER, type ExampleCall, exampleCalls, formatExampleCalls } from "./example-calls.js";
export { defaultMetricsUrls, type PrometheusConfigOptions, prometheusConfig } from "./prometheus-config.js";
export {
  builtServices,
  type Endpoints,
  NATS_PORT,
  REPO_ROOT,
  type ReportedTelemetry,
  type RestartOptions,
  type RunningService,
  type RunningSystem,
  reportedTelemetry,
  type StartSystemOptions,
  startOrder,
  startSystem,
} from "./start-system.js";
export { formatTelemetry, OTLP_HINT } from "./telemetry-summary.js";
export { buildWebIfStale, type WebBuildState, webBuildState } from "./web-build.js";
