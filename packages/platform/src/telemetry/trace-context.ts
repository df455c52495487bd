import {
  type Context,
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  type SpanContext,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";

/** Response header in which the edge returns the trace id, so a user can quote it. */
export const TRACE_ID_HEADER = "x-trace-id";

/** The active span's context if it is a real one (not the root/invalid context). */
export function activeSpanContext(ctx: Context = context.active()): SpanContext | undefined {
  const sc = trace.getSpanContext(ctx);
  return sc && isSpanContextValid(sc) ? sc : undefined;
}

/** W3C `traceparent` of the active span (e.g. to store with an outbox row), or undefined outside a span. */
export function activeTraceparent(ctx: Context = context.active()): string | undefined {
  const sc = activeSpanContext(ctx);
  if (!sc) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** Pino mixin: `trace_id` and `span_id` on every line written inside a span. */
export function traceLogFields(): Record<string, string> {
  const sc = activeSpanContext();
  return sc ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

/** Getter for a fetch-style `Headers` (connect-node request headers). */
export const headersGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};

/** Anything with get/set/keys of strings, such as nats.js MsgHdrs. */
export interface HeaderMap {
  get(key: string): string;
  set(key: string, value: string): void;
  keys(): string[];
}

export const headerMapGetter: TextMapGetter<HeaderMap> = {
  keys: (h) => h.keys(),
  // nats.js answers "" for a missing header.
  get: (h, key) => h.get(key) || undefined,
};

export const headerMapSetter: TextMapSetter<HeaderMap> = {
  set: (h, key, value) => h.set(key, value),
};

/** The context carried by a stored `traceparent` (root when there is none): the parent of a span continuing that trace. */
export function contextFromTraceparent(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, { traceparent }, recordGetter);
}

const recordGetter: TextMapGetter<Record<string, string>> = {
  keys: (r) => Object.keys(r),
  get: (r, key) => r[key],
};
