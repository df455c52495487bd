import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { dirname, join } from "node:path";
import { type MeterProvider as ApiMeterProvider, context, metrics, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
// The OTLP exporters and the grpc-js instrumentation are imported only when spans are exported
// (dynamic import() below): ~130 CommonJS modules that a process exporting nothing would load,
// parse and keep in its heap for nothing (start-up and idle RSS, README "Performance").
import type { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  type Sampler,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { ConfigError } from "../config/config.js";

/** Collects finished spans in memory: pass it as `spanExporter` in tests and read `getFinishedSpans()`. */
export { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";

import { instrumentGrpcJs } from "./grpc-patch.js";
import { setGrpcPropagation } from "./grpc-propagation.js";
import { InboundB3Propagator } from "./propagators.js";

export interface TelemetryOptions {
  /** service.name. Default: OTEL_SERVICE_NAME, else the name of the main script's package without its scope. */
  serviceName?: string;
  /** service.version. Default: OTEL_SERVICE_VERSION, else the main script's package version. */
  serviceVersion?: string;
  /**
   * OTLP/HTTP (protobuf) endpoint, e.g. http://127.0.0.1:4318 (traces go to `<endpoint>/v1/traces`).
   * Default: OTEL_EXPORTER_OTLP_ENDPOINT. Unset: nothing is exported.
   */
  otlpEndpoint?: string;
  /**
   * OTLP/HTTP encoding: "http/protobuf" or "http/json". Default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
   * else OTEL_EXPORTER_OTLP_PROTOCOL, else "http/protobuf". ("grpc" is refused: not installed.)
   */
  otlpProtocol?: OtlpProtocol;
  /** Sampler. Default: from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, see `samplerFromEnv`. */
  sampler?: Sampler;
  /**
   * Extra exporter (tests pass an InMemorySpanExporter), exported through a SimpleSpanProcessor so
   * spans are there as soon as they end. Default none.
   */
  spanExporter?: SpanExporter;
  /**
   * Port of the Prometheus scrape endpoint (`GET /metrics`). Default: METRICS_PORT. Unset or empty:
   * no endpoint and no MeterProvider (instruments are the API's no-ops); 0: any free port.
   */
  metricsPort?: number;
  /** Host the metrics endpoint binds. Default: METRICS_HOST, else HOST, else 127.0.0.1. */
  metricsHost?: string;
  /**
   * Patch grpc-js with @opentelemetry/instrumentation-grpc (client and server spans). Default: true
   * when spans go somewhere (an OTLP endpoint or `spanExporter`) and the sampler is not always_off;
   * false otherwise: then GrpcServer and createGrpcClient carry `traceparent` themselves
   * (grpc-propagation.ts) — ids continue, logs carry them, no gRPC spans are recorded, and the
   * instrumentation's cost is not paid.
   */
  instrumentGrpc?: boolean;
}

export type OtlpProtocol = "http/protobuf" | "http/json";

export interface Telemetry {
  readonly serviceName: string;
  readonly serviceVersion: string;
  /** Where spans go ("none" without an OTLP endpoint or test exporter). */
  readonly tracesTo: string;
  /** Whether grpc-js is patched by the instrumentation (else: trace context propagated only). */
  readonly grpcInstrumented: boolean;
  /** Bound port of the metrics endpoint, undefined when metrics are off. */
  readonly metricsPort: number | undefined;
  readonly tracerProvider: NodeTracerProvider;
  readonly meterProvider: MeterProvider | undefined;
  /** Exports what is buffered (spans in the batch processor). */
  flush(): Promise<void>;
  /** Flushes, closes the metrics endpoint, unpatches grpc-js and unregisters the global providers. */
  shutdown(): Promise<void>;
}

let current: Telemetry | undefined;
let grpcInstrumentation: GrpcInstrumentation | undefined;

/** The telemetry started in this process, if any. */
export function activeTelemetry(): Telemetry | undefined {
  return current;
}

/** Shuts down this process's telemetry (flushing spans); a no-op when none was started. */
export async function shutdownTelemetry(): Promise<void> {
  await current?.shutdown();
}

/**
 * Starts OpenTelemetry for this process: a NodeTracerProvider (resource service.name and
 * service.version, async-hooks context), W3C traceparent/tracestate propagation with B3 also
 * accepted on input (Envoy emits it), OTLP export only when an endpoint is given, and a
 * MeterProvider with a Prometheus endpoint only when a metrics port is given. One per process:
 * call `shutdown()` before starting another (tests).
 *
 * When spans are exported (an endpoint or `spanExporter`), grpc-js is patched by the
 * instrumentation (client and server spans). Otherwise the default sampler is
 * parentbased_always_off and grpc-js is left alone: GrpcServer and createGrpcClient propagate
 * `traceparent` themselves (grpc-propagation.ts), so trace and span ids are still minted and
 * continued (logs carry them, the gateway returns x-trace-id) at no measurable cost. A sampled
 * parent (from Envoy or a caller that exports) keeps its sampled flag on the way through, but this
 * process exports nothing.
 */
export async function startTelemetry(opts: TelemetryOptions = {}): Promise<Telemetry> {
  if (current) throw new Error("telemetry is already started in this process; shut it down first");
  const env = process.env;
  const pkg = mainPackage();
  const serviceName = opts.serviceName ?? nonEmpty(env.OTEL_SERVICE_NAME) ?? pkg.name ?? "unknown_service:node";
  const serviceVersion = opts.serviceVersion ?? nonEmpty(env.OTEL_SERVICE_VERSION) ?? pkg.version ?? "0.0.0";
  const endpoint = opts.otlpEndpoint ?? nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (endpoint !== undefined) checkUrl("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
  const protocol = opts.otlpProtocol ?? protocolFromEnv(env);
  const sampler = opts.sampler ?? samplerFromEnv(env, endpoint !== undefined || opts.spanExporter !== undefined);
  const metricsPort = opts.metricsPort ?? portFromEnv("METRICS_PORT", env.METRICS_PORT);
  const metricsHost = opts.metricsHost ?? nonEmpty(env.METRICS_HOST) ?? nonEmpty(env.HOST) ?? "127.0.0.1";

  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: serviceName,
    [ATTR_SERVICE_VERSION]: serviceVersion,
  });
  // The metrics endpoint first: a port that cannot be bound stops start-up, naming METRICS_PORT,
  // before anything is registered globally.
  let meterProvider: MeterProvider | undefined;
  let server: Server | undefined;
  let boundMetricsPort: number | undefined;
  if (metricsPort !== undefined) {
    const exporter = new PrometheusExporter({ preventServerStart: true });
    const metricsServer = createServer((req, res) => {
      if (req.method === "GET" && req.url?.split("?")[0] === "/metrics") exporter.getMetricsRequestHandler(req, res);
      else {
        res.statusCode = 404;
        res.end("metrics are at /metrics\n");
      }
    });
    boundMetricsPort = await new Promise<number>((resolve, reject) => {
      metricsServer.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          new ConfigError(
            `METRICS_PORT: cannot listen on ${metricsHost}:${metricsPort} (${err.code === "EADDRINUSE" ? "in use" : (err.code ?? err.message)})`,
          ),
        ),
      );
      metricsServer.listen(metricsPort, metricsHost, () => {
        const a = metricsServer.address();
        resolve(typeof a === "object" && a ? a.port : metricsPort);
      });
    });
    metricsServer.unref();
    server = metricsServer;
    meterProvider = new MeterProvider({ resource, readers: [exporter] });
    metrics.setGlobalMeterProvider(meterProvider as ApiMeterProvider);
  }

  const spanProcessors: SpanProcessor[] = [];
  const destinations: string[] = [];
  if (endpoint !== undefined) {
    const url = tracesUrl(endpoint);
    const exporter =
      protocol === "http/json"
        ? new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter({ url })
        : new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter({ url });
    spanProcessors.push(new BatchSpanProcessor(exporter));
    destinations.push(`OTLP ${url}${protocol === "http/json" ? " (json)" : ""}`);
  }
  if (opts.spanExporter) {
    spanProcessors.push(new SimpleSpanProcessor(opts.spanExporter));
    destinations.push("test exporter");
  }
  const tracerProvider = new NodeTracerProvider({ resource, sampler, spanProcessors });
  tracerProvider.register({
    contextManager: new AsyncLocalStorageContextManager(),
    propagator: new InboundB3Propagator(new W3CTraceContextPropagator()),
  });

  // grpc-js spans only when they go somewhere: unsampled, the instrumentation still costs about a
  // third more CPU per call (README "Overhead"); without it GrpcServer and createGrpcClient carry
  // the trace context themselves.
  const instrumentGrpc = opts.instrumentGrpc ?? (spanProcessors.length > 0 && !(sampler instanceof AlwaysOffSampler));
  let unregister = () => {};
  if (instrumentGrpc) {
    // One instrumentation per process, re-enabled on a restart: a second instance would never see
    // grpc-js again (require-in-the-middle patches a module once, at its first require).
    if (grpcInstrumentation) {
      const g = grpcInstrumentation;
      g.setTracerProvider(tracerProvider);
      g.enable();
      unregister = () => g.disable();
    } else {
      const [{ registerInstrumentations }, { GrpcInstrumentation }] = await Promise.all([
        import("@opentelemetry/instrumentation"),
        import("@opentelemetry/instrumentation-grpc"),
      ]);
      grpcInstrumentation = new GrpcInstrumentation();
      unregister = registerInstrumentations({ tracerProvider, instrumentations: [grpcInstrumentation] });
    }
    // grpc-js modules that our ESM code already imported never went through require(); hand the
    // module to require-in-the-middle now (see grpc-patch.ts).
    instrumentGrpcJs();
  }
  setGrpcPropagation(!instrumentGrpc);

  let stopped: Promise<void> | undefined;
  const telemetry: Telemetry = {
    serviceName,
    serviceVersion,
    tracesTo: destinations.length > 0 ? destinations.join(", ") : "none",
    grpcInstrumented: instrumentGrpc,
    metricsPort: boundMetricsPort,
    tracerProvider,
    meterProvider,
    flush: () => tracerProvider.forceFlush(),
    shutdown() {
      stopped ??= (async () => {
        unregister();
        setGrpcPropagation(false);
        await tracerProvider.shutdown().catch(() => {});
        await meterProvider?.shutdown().catch(() => {});
        if (server) await new Promise<void>((r) => server?.close(() => r()));
        trace.disable();
        propagation.disable();
        context.disable();
        metrics.disable();
        if (current === telemetry) current = undefined;
      })();
      return stopped;
    },
  };
  current = telemetry;
  return telemetry;
}

/**
 * The sampler named by OTEL_TRACES_SAMPLER (always_on, always_off, traceidratio,
 * parentbased_always_on, parentbased_always_off, parentbased_traceidratio) with
 * OTEL_TRACES_SAMPLER_ARG as the ratio (0..1, default 1). Unset: parentbased_always_on when spans
 * go somewhere (`exporting`), else parentbased_always_off.
 */
export function samplerFromEnv(env: Record<string, string | undefined>, exporting: boolean): Sampler {
  const name = nonEmpty(env.OTEL_TRACES_SAMPLER) ?? (exporting ? "parentbased_always_on" : "parentbased_always_off");
  const ratio = () => {
    const raw = nonEmpty(env.OTEL_TRACES_SAMPLER_ARG);
    if (raw === undefined) return 1;
    const r = Number(raw);
    if (!Number.isFinite(r) || r < 0 || r > 1)
      throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got "${raw}"`);
    return r;
  };
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio());
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      throw new ConfigError(
        `OTEL_TRACES_SAMPLER must be one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio; got "${name}"`,
      );
  }
}

/** OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL (the spec's names and values). */
function protocolFromEnv(env: Record<string, string | undefined>): OtlpProtocol {
  const name = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?.trim()
    ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const raw = nonEmpty(env[name]) ?? "http/protobuf";
  if (raw === "http/protobuf" || raw === "http/json") return raw;
  throw new ConfigError(`${name} must be http/protobuf or http/json (OTLP over HTTP), got "${raw}"`);
}

/** OTEL_EXPORTER_OTLP_ENDPOINT is the base URL; the traces signal is at /v1/traces (OTLP spec). */
function tracesUrl(endpoint: string): string {
  return `${endpoint.replace(/\/+$/, "")}/v1/traces`;
}

function checkUrl(name: string, raw: string): void {
  let ok = false;
  try {
    const u = new URL(raw);
    ok = u.protocol === "http:" || u.protocol === "https:";
  } catch {}
  if (!ok) throw new ConfigError(`${name} must be an http(s) URL such as http://127.0.0.1:4318, got "${raw}"`);
}

function portFromEnv(name: string, raw: string | undefined): number | undefined {
  const v = nonEmpty(raw);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new ConfigError(`${name} must be a TCP port (0-65535, 0 = any free port), got "${raw}"`);
  return n;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

/** Name (scope dropped: "@taskmesh/tasks" → "tasks") and version of the package holding the main script. */
function mainPackage(): { name?: string; version?: string } {
  let dir = process.argv[1] ? dirname(process.argv[1]) : undefined;
  for (let i = 0; dir && i < 6; i++) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
        return { name: pkg.name?.replace(/^@[^/]+\//, ""), version: pkg.version };
      } catch {
        return {};
      }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return {};
}
