import type { Metadata } from "@grpc/grpc-js";
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";

/**
 * Trace context on grpc-js calls WITHOUT `@opentelemetry/instrumentation-grpc`, for a process
 * whose spans go nowhere (no OTLP endpoint, no test exporter).
 *
 * The instrumentation costs about a third more CPU per unary call even when nothing is sampled
 * (it re-wraps every call's emitter and callbacks, binds them to the context, builds attributes;
 * measured in README.md "Overhead"), while all such a process needs is the ids: logs carry
 * `trace_id`/`span_id`, the gateway answers `x-trace-id`, the next service continues the trace. So
 * `startTelemetry` installs the instrumentation only when spans are exported, and otherwise turns
 * this on: GrpcServer runs each handler in a SERVER span whose parent is the caller's
 * `traceparent` (B3 accepted), made by the SDK tracer — non-recording under the default
 * parentbased_always_off sampler, so it is little more than two random ids — and
 * createGrpcClient puts the active context's `traceparent` on outgoing calls (no client span).
 * The sampled flag travels unchanged, so a caller's sampled trace continues sampled downstream.
 */
let tracer: Tracer | undefined;

/** On (`startTelemetry` without the instrumentation) or off (instrumented, or telemetry stopped). */
export function setGrpcPropagation(on: boolean): void {
  tracer = on ? trace.getTracer(TRACER_NAME) : undefined;
}

/** Tracer (instrumentation scope) of the SERVER spans started here. */
export const TRACER_NAME = "taskmesh.grpc-propagation";

/**
 * A SERVER span for an incoming call `path` ("/pkg.Service/Method"), child of the caller's context
 * in `metadata`, and the context to run the handler in; undefined when propagation is off.
 */
export function startServerCallSpan(path: string, metadata: Metadata): { context: Context; span: Span } | undefined {
  if (!tracer) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, metadata, metadataGetter);
  // Same name as the instrumentation's server span: "grpc.pkg.Service/Method".
  const span = tracer.startSpan(`grpc.${path.slice(1)}`, SERVER, parent);
  return { context: trace.setSpan(parent, span), span };
}

/** Puts the active context's `traceparent`/`tracestate` on an outgoing call's metadata (when on). */
export function injectCallContext(metadata: Metadata): void {
  if (tracer) propagation.inject(context.active(), metadata, metadataSetter);
}

const SERVER = { kind: SpanKind.SERVER };

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (m) => Object.keys(m.getMap()),
  get: (m, key) => {
    const v = m.get(key);
    if (v.length === 0) return undefined;
    return v.length === 1 ? String(v[0]) : v.map(String);
  },
};

const metadataSetter: TextMapSetter<Metadata> = {
  set: (m, key, value) => m.set(key, value),
};
