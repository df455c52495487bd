import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type Context, context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { codeName } from "../rpc/errors.js";
import { recordRpc } from "../telemetry/metrics.js";
import { headersGetter, TRACE_ID_HEADER } from "../telemetry/trace-context.js";

/**
 * Server-side tracing and RED metrics for the connect-node edge (instrumentation-http does not
 * cover http2, and it would see HTTP requests rather than RPCs).
 *
 * Per call: the caller's context is extracted from the request headers (W3C traceparent, or B3
 * from Envoy), a SERVER span `<service>/<method>` is started as its child and made active while
 * the handler runs — so the handler's grpc-js calls to the backends are its children — and the
 * trace id is returned in `x-trace-id` (on errors too) so a user can quote it. The span ends when
 * a unary call returns or a stream's last message has been sent, with the status code as
 * `rpc.grpc.status_code` (semantic conventions: on a server span, only the codes that mean a
 * server fault set the ERROR status).
 */
export function telemetryInterceptor(tracerName = "taskmesh.edge"): Interceptor {
  return (next) => async (req) => {
    // Probes and reflection would bury the requests in traces and metrics.
    if (UNTRACED.test(req.service.typeName)) return await next(req);
    const tracer = trace.getTracer(tracerName);
    const system = String(req.header.get("content-type") ?? "").startsWith("application/grpc")
      ? ("grpc" as const)
      : ("connect_rpc" as const);
    const service = req.service.typeName;
    const method = req.method.name;
    const parent = propagation.extract(context.active(), req.header, headersGetter);
    const span = tracer.startSpan(
      `${service}/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "rpc.system": system, "rpc.service": service, "rpc.method": method },
      },
      parent,
    );
    const active = trace.setSpan(parent, span);
    const traceId = span.spanContext().traceId;
    const started = performance.now();
    const finish = (code: Code | undefined, err?: unknown) => {
      const name = code === undefined ? "OK" : codeName(code);
      span.setAttribute("rpc.grpc.status_code", code ?? 0);
      if (code !== undefined && SERVER_FAULTS.has(code)) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      }
      span.end();
      recordRpc(system, service, method, name, (performance.now() - started) / 1000);
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await context.with(active, () => next(req));
    } catch (err) {
      const e = ConnectError.from(err);
      e.metadata.set(TRACE_ID_HEADER, traceId);
      finish(e.code, e);
      throw e;
    }
    res.header.set(TRACE_ID_HEADER, traceId);
    if (!res.stream) {
      finish(undefined);
      return res;
    }
    return { ...res, message: traced(res.message, active, finish) };
  };
}

const UNTRACED = /^grpc\.(health|reflection)\./;

/** The codes that are the server's fault (OpenTelemetry semantic conventions for gRPC server spans). */
const SERVER_FAULTS = new Set<Code>([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/**
 * A stream's messages, each produced inside the call's context (an async generator handler runs
 * lazily, when connect pulls the next message, outside the interceptor's `context.with`), ending
 * the span when the stream ends.
 */
function traced<T>(
  source: AsyncIterable<T>,
  active: Context,
  finish: (code: Code | undefined, err?: unknown) => void,
): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = context.with(active, () => source[Symbol.asyncIterator]());
      let done = false;
      const end = (code: Code | undefined, err?: unknown) => {
        if (done) return;
        done = true;
        finish(code, err);
      };
      return {
        async next() {
          try {
            const r = await context.with(active, () => it.next());
            if (r.done) end(undefined);
            return r;
          } catch (err) {
            end(ConnectError.from(err).code, err);
            throw err;
          }
        },
        async return(value?: unknown) {
          end(Code.Canceled);
          return (await it.return?.(value)) ?? { done: true, value: undefined };
        },
        async throw(err?: unknown) {
          end(ConnectError.from(err).code, err);
          if (it.throw) return await it.throw(err);
          throw err;
        },
      } as AsyncIterator<T>;
    },
  };
}
