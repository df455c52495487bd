// Telemetry without an exporter (its own file: one telemetry per process, and grpc-js must not have
// been patched by an earlier start in this process): grpc-js is left alone, and GrpcServer /
// createGrpcClient carry the trace context themselves.
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { AlwaysOffSampler } from "@opentelemetry/sdk-trace-node";
import { TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EdgeServer } from "../edge/edge-server.js";
import { forwardService } from "../edge/forward-service.js";
import { createLogger } from "../log/logger.js";
import { createGrpcClient, type GrpcClient } from "../rpc/grpc-client.js";
import { GrpcServer, register } from "../rpc/grpc-server.js";
import { stubService } from "../testing/service-stub.js";
import { grpcJsInstrumented } from "./grpc-patch.js";
import { InMemorySpanExporter, startTelemetry, type Telemetry } from "./telemetry.js";
import { activeSpanContext, TRACE_ID_HEADER } from "./trace-context.js";

// Whatever the shell says, this file is about a process that exports nothing.
for (const name of ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"]) {
  delete process.env[name];
}

const ALL_METHODS = TaskService.methods.map((m) => m.localName);
const FOUND = "10000000-0000-4000-8000-000000000000";
const MISSING = "00000000-0000-4000-8000-000000000000";

/** A logger whose JSON lines are kept in `lines`. */
function capturedLogger(service: string) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { logger: createLogger(service, { destination }), lines };
}

interface Seen {
  traceId?: string;
  spanId?: string;
  traceFlags?: number;
  recording?: boolean;
  traceparent: string | null;
}

/**
 * Two GrpcServers in a chain: "front" GetTask logs and calls "back" GetTask (parent: its context),
 * "back" logs and notes its span and the traceparent it was sent. NOT_FOUND for ids starting "0".
 */
async function startChain() {
  const front = capturedLogger("front");
  const back = capturedLogger("back");
  const seen: { front: Seen[]; back: Seen[] } = { front: [], back: [] };
  const note = (ctx: HandlerContext): Seen => {
    const sc = activeSpanContext();
    return {
      traceId: sc?.traceId,
      spanId: sc?.spanId,
      traceFlags: sc?.traceFlags,
      recording: trace.getActiveSpan()?.isRecording(),
      traceparent: ctx.requestHeader.get("traceparent"),
    };
  };
  const impl = (
    name: "front" | "back",
    log: ReturnType<typeof capturedLogger>["logger"],
    next?: () => GrpcClient<typeof TaskService>,
  ) =>
    register(
      TaskService,
      stubService(
        TaskService,
        {
          async getTask(req, ctx) {
            seen[name].push(note(ctx));
            log.info({ taskId: req.taskId }, `${name} handling`);
            if (next) return await next().getTask(req, { parent: ctx });
            if (req.taskId.startsWith("0")) throw new ConnectError(`task ${req.taskId} not found`, Code.NotFound);
            return { task: create(TaskSchema, { id: req.taskId, title: "t", status: TaskStatus.OPEN }) };
          },
        },
        "empty",
      ),
      { kind: "user", anonymous: ALL_METHODS },
    );
  const backServer = new GrpcServer({ name: "back", logger: back.logger, services: [impl("back", back.logger)] });
  const backPort = await backServer.listen(0);
  const toBack = createGrpcClient(TaskService, { address: `127.0.0.1:${backPort}` });
  const frontServer = new GrpcServer({
    name: "front",
    logger: front.logger,
    services: [impl("front", front.logger, () => toBack)],
  });
  const frontPort = await frontServer.listen(0);
  const client = createGrpcClient(TaskService, { address: `127.0.0.1:${frontPort}` });
  return {
    client,
    frontPort,
    seen,
    logs: { front: front.lines, back: back.lines },
    async stop() {
      client.close();
      toBack.close();
      await frontServer.shutdown(1000);
      await backServer.shutdown(1000);
    },
  };
}

const lineOf = (lines: Record<string, unknown>[], msg: string) => {
  const found = lines.filter((l) => l.msg === msg);
  expect(found, msg).toHaveLength(1);
  return found[0] as Record<string, unknown>;
};

describe("telemetry without an exporter", () => {
  let telemetry: Telemetry;
  let chain: Awaited<ReturnType<typeof startChain>>;
  beforeAll(async () => {
    telemetry = await startTelemetry({ serviceName: "unexported-test", metricsPort: 0 });
    chain = await startChain();
  });
  afterAll(async () => {
    await chain?.stop();
    await telemetry?.shutdown();
  });

  it("leaves grpc-js unpatched: no instrumentation when no span is exported", () => {
    expect(telemetry.tracesTo).toBe("none");
    expect(telemetry.grpcInstrumented).toBe(false);
    expect(grpcJsInstrumented()).toBe(false);
  });

  it("carries the caller's trace from a client call to the handler and on to the next service; logs on every side carry it", async () => {
    const { logger, lines } = capturedLogger("caller");
    const caller = trace.getTracer("test").startSpan("caller");
    // Nothing is sampled: the span records nothing, but its ids are real.
    expect(caller.isRecording()).toBe(false);
    const traceId = caller.spanContext().traceId;
    chain.seen.front.length = 0;
    chain.seen.back.length = 0;
    await context.with(trace.setSpan(context.active(), caller), async () => {
      logger.info("calling");
      await chain.client.getTask({ taskId: FOUND });
    });
    caller.end();

    const [front] = chain.seen.front;
    const [back] = chain.seen.back;
    expect(front).toMatchObject({ traceId, traceFlags: 0, recording: false });
    expect(back).toMatchObject({ traceId, traceFlags: 0, recording: false });
    // W3C on the wire; each handler has a span of its own, child of the caller's.
    expect(front?.traceparent).toBe(`00-${traceId}-${caller.spanContext().spanId}-00`);
    expect(back?.traceparent).toBe(`00-${traceId}-${front?.spanId}-00`);
    expect(new Set([caller.spanContext().spanId, front?.spanId, back?.spanId]).size).toBe(3);

    expect(lineOf(lines, "calling")).toMatchObject({ trace_id: traceId, span_id: caller.spanContext().spanId });
    expect(lineOf(chain.logs.front, "front handling")).toMatchObject({ trace_id: traceId, span_id: front?.spanId });
    expect(lineOf(chain.logs.back, "back handling")).toMatchObject({ trace_id: traceId, span_id: back?.spanId });
  });

  it("mints a trace for a call made outside any span, and the next service continues it", async () => {
    chain.seen.front.length = 0;
    chain.seen.back.length = 0;
    await chain.client.getTask({ taskId: FOUND });
    const [front] = chain.seen.front;
    const [back] = chain.seen.back;
    expect(front?.traceparent).toBeNull();
    expect(front?.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(back?.traceId).toBe(front?.traceId);
    expect(back?.traceparent).toBe(`00-${front?.traceId}-${front?.spanId}-00`);
  });

  it("follows an incoming sampled traceparent, and B3 from Envoy, with the same ids and the sampled flag onwards", async () => {
    const cases: [string, Record<string, string>, string, string][] = [
      [
        "w3c",
        { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
      ],
      [
        "b3 multi",
        { "x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1" },
        "463ac35c9f6413ad48485a3953bb6124",
        "a2fb4a1d1a96d312",
      ],
    ];
    for (const [what, headers, traceId] of cases) {
      chain.seen.front.length = 0;
      chain.seen.back.length = 0;
      await chain.client.getTask({ taskId: FOUND }, { headers });
      const [front] = chain.seen.front;
      const [back] = chain.seen.back;
      expect(front, what).toMatchObject({ traceId, traceFlags: 1 });
      expect(back, what).toMatchObject({ traceId, traceFlags: 1 });
      expect(back?.traceparent, what).toBe(`00-${traceId}-${front?.spanId}-01`);
    }
  });

  it("the edge answers x-trace-id, the trace the backend's handler and logs are in, and RED metrics still count", async () => {
    const toFront = createGrpcClient(TaskService, { address: `127.0.0.1:${chain.frontPort}` });
    const edge = new EdgeServer({
      logger: createLogger("edge", { level: "silent" }),
      services: [
        {
          service: TaskService,
          impl: forwardService(TaskService, toFront, {
            userTokens: { verify: async () => "user-1" },
            anonymous: ALL_METHODS,
          }),
        },
      ],
    });
    const edgePort = await edge.listen(0);
    const scrape = async () => (await fetch(`http://127.0.0.1:${telemetry.metricsPort}/metrics`)).text();
    const before = await scrape();
    try {
      const client = createClient(
        TaskService,
        createConnectTransport({ baseUrl: `http://127.0.0.1:${edgePort}`, httpVersion: "1.1" }),
      );
      for (const taskId of [FOUND, MISSING]) {
        chain.seen.back.length = 0;
        chain.logs.back.length = 0;
        let header: Headers | undefined;
        const err = await client.getTask({ taskId }, { onHeader: (h) => (header = h) }).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err?.code).toBe(taskId === FOUND ? undefined : Code.NotFound);
        const traceId = (err ? err.metadata : header)?.get(TRACE_ID_HEADER);
        expect(traceId, taskId).toMatch(/^[0-9a-f]{32}$/);
        expect(chain.seen.back[0]?.traceId, taskId).toBe(traceId);
        expect(lineOf(chain.logs.back, "back handling").trace_id, taskId).toBe(traceId);
      }
    } finally {
      await edge.shutdown(1000);
      toFront.close();
    }
    const after = await scrape();
    const labels = { rpc_service: "taskmesh.tasks.v1.TaskService", rpc_method: "GetTask" };
    // Two edge calls; each reached both GrpcServers of the chain (front and back share the process).
    expect(metric(after, "rpc_server_requests_total", { ...labels, rpc_system: "connect_rpc" })).toBe(
      metric(before, "rpc_server_requests_total", { ...labels, rpc_system: "connect_rpc" }) + 2,
    );
    expect(metric(after, "rpc_server_requests_total", { ...labels, rpc_system: "grpc" })).toBe(
      metric(before, "rpc_server_requests_total", { ...labels, rpc_system: "grpc" }) + 4,
    );
    expect(metric(after, "rpc_server_errors_total", { ...labels, rpc_system: "grpc", rpc_code: "NOT_FOUND" })).toBe(
      metric(before, "rpc_server_errors_total", { ...labels, rpc_system: "grpc", rpc_code: "NOT_FOUND" }) + 2,
    );
  });
});

describe("telemetry restarted with an exporter in the same process", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  beforeAll(async () => {
    telemetry = await startTelemetry({ serviceName: "exported-test", spanExporter: exporter });
  });
  afterAll(async () => {
    await telemetry?.shutdown();
  });

  it("patches grpc-js: a call gives client and server spans of the instrumentation, linked, in the caller's trace", async () => {
    expect(telemetry.grpcInstrumented).toBe(true);
    expect(grpcJsInstrumented()).toBe(true);
    // Built after telemetry started: the instrumentation wraps handlers as they are registered.
    const chain = await startChain();
    const root = trace.getTracer("test").startSpan("caller");
    try {
      await context.with(trace.setSpan(context.active(), root), () => chain.client.getTask({ taskId: FOUND }));
    } finally {
      root.end();
      await chain.stop();
    }
    const traceId = root.spanContext().traceId;
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const clients = spans.filter((s) => s.kind === SpanKind.CLIENT);
    const servers = spans.filter((s) => s.kind === SpanKind.SERVER);
    // caller → client → front server → client → back server.
    expect(clients).toHaveLength(2);
    expect(servers).toHaveLength(2);
    for (const s of [...clients, ...servers]) {
      expect(s.instrumentationScope.name).toBe("@opentelemetry/instrumentation-grpc");
      expect(s.name).toBe("grpc.taskmesh.tasks.v1.TaskService/GetTask");
    }
    const byParent = new Map(spans.map((s) => [s.parentSpanContext?.spanId, s]));
    const first = byParent.get(root.spanContext().spanId);
    const front = first && byParent.get(first.spanContext().spanId);
    const second = front && byParent.get(front.spanContext().spanId);
    const back = second && byParent.get(second.spanContext().spanId);
    expect([first?.kind, front?.kind, second?.kind, back?.kind]).toEqual([
      SpanKind.CLIENT,
      SpanKind.SERVER,
      SpanKind.CLIENT,
      SpanKind.SERVER,
    ]);
    // The logs of that handler carry the instrumentation's server span.
    expect(lineOf(chain.logs.back, "back handling")).toMatchObject({
      trace_id: traceId,
      span_id: back?.spanContext().spanId,
    });
  });
});

describe("telemetry with an exporter but the always_off sampler", () => {
  it("leaves grpc-js unpatched (no span could be recorded) and still carries the ids", async () => {
    const telemetry = await startTelemetry({
      serviceName: "always-off-test",
      spanExporter: new InMemorySpanExporter(),
      sampler: new AlwaysOffSampler(),
    });
    const chain = await startChain();
    try {
      expect(telemetry.grpcInstrumented).toBe(false);
      expect(grpcJsInstrumented()).toBe(false);
      await chain.client.getTask({ taskId: FOUND });
      const [front] = chain.seen.front;
      expect(front?.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(chain.seen.back[0]?.traceId).toBe(front?.traceId);
    } finally {
      await chain.stop();
      await telemetry.shutdown();
    }
  });
});

/** The value of the sample `name{labels...}` (all given labels match; 0 when absent). */
function metric(scrape: string, name: string, labels: Record<string, string>): number {
  for (const line of scrape.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([0-9.eE+-]+|NaN)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}
