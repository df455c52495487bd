import { join } from "node:path";
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { context, SpanKind, trace } from "@opentelemetry/api";
import type { ReadableSpan } from "@opentelemetry/sdk-trace-node";
import { type Envelope, UserRegisteredSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../db/database.js";
import { EdgeServer } from "../edge/edge-server.js";
import { forwardService } from "../edge/forward-service.js";
import { EventConsumer } from "../events/consumer.js";
import { inboxMigration } from "../events/inbox.js";
import { NatsLink } from "../events/nats-link.js";
import { appendEvent, newEvent, outboxMigration } from "../events/outbox.js";
import { OutboxRelay } from "../events/relay.js";
import type { StreamSpec } from "../events/streams.js";
import { createLogger } from "../log/logger.js";
import { DependencyPolicy } from "../resilience/dependency-policy.js";
import { createGrpcClient } from "../rpc/grpc-client.js";
import { GrpcServer, register } from "../rpc/grpc-server.js";
import { type NatsServer, startNats, stubService, tempDir, waitFor } from "../testing/index.js";
import { grpcJsInstrumented } from "./grpc-patch.js";
import { InMemorySpanExporter, samplerFromEnv, startTelemetry, type Telemetry } from "./telemetry.js";
import { activeSpanContext, TRACE_ID_HEADER } from "./trace-context.js";

const logger = createLogger("telemetry-test", { level: "silent" });
const exporter = new InMemorySpanExporter();
let telemetry: Telemetry;
let backend: GrpcServer;
let backendPort: number;
const ALL_METHODS = TaskService.methods.map((m) => m.localName);
/** The backend's getTask: NOT_FOUND for ids starting with "0", a task otherwise; it notes the active span. */
const seenInHandler: { traceId: string; spanId: string }[] = [];

beforeAll(async () => {
  telemetry = await startTelemetry({ serviceName: "telemetry-test", spanExporter: exporter, metricsPort: 0 });
  backend = new GrpcServer({
    name: "backend",
    logger,
    userTokens: { verify: async () => "user-1" },
    services: [
      register(
        TaskService,
        stubService(
          TaskService,
          {
            getTask(req) {
              const sc = activeSpanContext();
              if (sc) seenInHandler.push({ traceId: sc.traceId, spanId: sc.spanId });
              if (req.taskId.startsWith("0")) throw new ConnectError(`task ${req.taskId} not found`, Code.NotFound);
              return { task: create(TaskSchema, { id: req.taskId, title: "t", status: TaskStatus.OPEN }) };
            },
          },
          "empty",
        ),
        { kind: "user", anonymous: ALL_METHODS },
      ),
    ],
  });
  backendPort = await backend.listen(0);
});

afterAll(async () => {
  await backend?.shutdown(1000);
  await telemetry?.shutdown();
});

const FOUND = "10000000-0000-4000-8000-000000000000";
const MISSING = "00000000-0000-4000-8000-000000000000";

function spansOf(traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}
function only(spans: ReadableSpan[], kind: SpanKind, scope?: RegExp): ReadableSpan {
  const found = spans.filter((s) => s.kind === kind && (!scope || scope.test(s.instrumentationScope.name)));
  expect(found, `one ${SpanKind[kind]} span among ${spans.map((s) => s.name).join(", ")}`).toHaveLength(1);
  return found[0] as ReadableSpan;
}
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const idOf = (s: ReadableSpan) => s.spanContext().spanId;

describe("telemetry setup", () => {
  it("patches grpc-js although our ESM code imported it before telemetry started (spans are exported)", () => {
    expect(telemetry.grpcInstrumented).toBe(true);
    expect(grpcJsInstrumented()).toBe(true);
  });

  it("reads the sampler from OTEL_TRACES_SAMPLER, records nothing by default when nothing exports, and names a bad value", () => {
    expect(samplerFromEnv({}, false).toString()).toMatch(/ParentBased\{root=AlwaysOffSampler/);
    expect(samplerFromEnv({}, true).toString()).toMatch(/ParentBased\{root=AlwaysOnSampler/);
    expect(
      samplerFromEnv(
        { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" },
        true,
      ).toString(),
    ).toMatch(/TraceIdRatioBased\{0.25\}/);
    expect(() => samplerFromEnv({ OTEL_TRACES_SAMPLER: "sometimes" }, true)).toThrow(/OTEL_TRACES_SAMPLER/);
    expect(() => samplerFromEnv({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" }, true)).toThrow(
      /OTEL_TRACES_SAMPLER_ARG/,
    );
  });
});

describe("gRPC spans", () => {
  it("a grpc-js client call to GrpcServer gives a client and a server span in one trace, the server's parent being the client", async () => {
    const client = createGrpcClient(TaskService, { address: `127.0.0.1:${backendPort}` });
    const tracer = trace.getTracer("test");
    const root = tracer.startSpan("caller");
    seenInHandler.length = 0;
    await context.with(trace.setSpan(context.active(), root), () => client.getTask({ taskId: FOUND }));
    root.end();
    client.close();
    const traceId = root.spanContext().traceId;
    const spans = spansOf(traceId);
    const clientSpan = only(spans, SpanKind.CLIENT);
    const serverSpan = only(spans, SpanKind.SERVER);
    expect(clientSpan.name).toBe("grpc.taskmesh.tasks.v1.TaskService/GetTask");
    expect(parentOf(clientSpan)).toBe(root.spanContext().spanId);
    expect(parentOf(serverSpan)).toBe(idOf(clientSpan));
    // The handler runs inside the server span (its logs and outgoing calls belong to it).
    expect(seenInHandler).toEqual([{ traceId, spanId: idOf(serverSpan) }]);
  });
});

describe("edge spans", () => {
  let edge: EdgeServer;
  let edgePort: number;
  beforeAll(async () => {
    const client = createGrpcClient(TaskService, { address: `127.0.0.1:${backendPort}` });
    edge = new EdgeServer({
      logger,
      services: [
        {
          service: TaskService,
          impl: forwardService(TaskService, client, {
            userTokens: { verify: async () => "user-1" },
            anonymous: ALL_METHODS,
          }),
        },
      ],
    });
    edgePort = await edge.listen(0);
  });
  afterAll(() => edge.shutdown(1000));

  it("chains edge SERVER → grpc-js CLIENT → backend SERVER in one trace and returns its id in x-trace-id", async () => {
    const client = createClient(
      TaskService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${edgePort}`, httpVersion: "1.1" }),
    );
    let header: Headers | undefined;
    await client.getTask({ taskId: FOUND }, { onHeader: (h) => (header = h) });
    const traceId = header?.get(TRACE_ID_HEADER) ?? "";
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    const spans = spansOf(traceId);
    const edgeSpan = only(spans, SpanKind.SERVER, /taskmesh\.edge/);
    const clientSpan = only(spans, SpanKind.CLIENT);
    const backendSpan = only(spans, SpanKind.SERVER, /grpc/);
    expect(edgeSpan.name).toBe("taskmesh.tasks.v1.TaskService/GetTask");
    expect(edgeSpan.attributes).toMatchObject({
      "rpc.system": "connect_rpc",
      "rpc.service": "taskmesh.tasks.v1.TaskService",
      "rpc.method": "GetTask",
      "rpc.grpc.status_code": 0,
    });
    expect(edgeSpan.parentSpanContext).toBeUndefined();
    expect(parentOf(clientSpan)).toBe(idOf(edgeSpan));
    expect(parentOf(backendSpan)).toBe(idOf(clientSpan));
  });

  it("returns x-trace-id on an error too, with the code on the edge span", async () => {
    const client = createClient(TaskService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${edgePort}` }));
    const err = await client.getTask({ taskId: MISSING }).then(
      () => expect.fail("GetTask of a missing task succeeded"),
      (e: unknown) => ConnectError.from(e),
    );
    expect(err.code).toBe(Code.NotFound);
    const traceId = err.metadata.get(TRACE_ID_HEADER) ?? "";
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    const edgeSpan = only(spansOf(traceId), SpanKind.SERVER, /taskmesh\.edge/);
    expect(edgeSpan.attributes["rpc.grpc.status_code"]).toBe(Code.NotFound);
    expect(edgeSpan.attributes["rpc.system"]).toBe("grpc");
  });

  it("continues a caller's W3C traceparent, and B3 (single or multi header) from Envoy", async () => {
    const client = createClient(
      TaskService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${edgePort}`, httpVersion: "1.1" }),
    );
    const cases: [string, Record<string, string>, string, string][] = [
      [
        "w3c",
        { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
      ],
      [
        "b3 single",
        { b3: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1" },
        "80f198ee56343ba864fe8b2a57d3eff7",
        "e457b5a2e4d86bd1",
      ],
      [
        "b3 multi",
        {
          "x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124",
          "x-b3-spanid": "a2fb4a1d1a96d312",
          "x-b3-sampled": "1",
        },
        "463ac35c9f6413ad48485a3953bb6124",
        "a2fb4a1d1a96d312",
      ],
    ];
    for (const [what, headers, traceId, parentSpanId] of cases) {
      let header: Headers | undefined;
      await client.getTask({ taskId: FOUND }, { headers, onHeader: (h) => (header = h) });
      expect(header?.get(TRACE_ID_HEADER), what).toBe(traceId);
      const spans = spansOf(traceId);
      const edgeSpan = only(spans, SpanKind.SERVER, /taskmesh\.edge/);
      expect(parentOf(edgeSpan), what).toBe(parentSpanId);
      // What goes on to the backend is W3C: its server span is in the same trace.
      expect(parentOf(only(spans, SpanKind.SERVER, /grpc/)), what).toBe(idOf(only(spans, SpanKind.CLIENT)));
    }
  });
});

describe("NATS spans", () => {
  const dir = tempDir("taskmesh-telemetry-");
  let nats: NatsServer;
  const stops: (() => Promise<void> | void)[] = [];
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    for (const s of stops.reverse()) await s();
    await nats?.stop();
    dir.remove();
  });

  it("an event appended inside a span is published in a PRODUCER span and handled in a CONSUMER span of the same trace", async () => {
    const db = openDatabase(join(dir.path, "svc.db"), [outboxMigration(1), inboxMigration(2)]);
    const link = new NatsLink({ servers: nats.url, name: "svc", logger, reconnectTimeWaitMs: 100 });
    const stream: StreamSpec = { name: "TELEMETRY", subjects: ["taskmesh.user.>"] };
    const relay = new OutboxRelay({ db, link, logger, streams: [stream], pollIntervalMs: 100 });
    const handled: { event: Envelope; traceId?: string; spanId?: string }[] = [];
    const consumer = new EventConsumer({
      link,
      db,
      logger,
      stream,
      consumer: { durable: "telemetry-test", ackWaitMs: 2000, maxDeliver: 3 },
      handler: (event) => {
        const sc = activeSpanContext();
        handled.push({ event, traceId: sc?.traceId, spanId: sc?.spanId });
      },
    });
    stops.push(
      () => link.close(),
      () => {
        db.close();
      },
    );
    stops.push(
      () => relay.stop(),
      () => consumer.stop(),
    );
    relay.start();
    consumer.start();

    const request = trace.getTracer("test").startSpan("request");
    const event = newEvent({
      userId: "u1",
      aggregateId: "u1",
      payload: { case: "userRegistered", value: create(UserRegisteredSchema, {}) },
    });
    // No traceparent passed: appendEvent takes the active span's.
    context.with(trace.setSpan(context.active(), request), () => db.transaction(() => appendEvent(db, event))());
    request.end();

    const got = await waitFor("the event to be handled", () => handled.find((h) => h.event.id === event.id));
    const traceId = request.spanContext().traceId;
    const spans = spansOf(traceId);
    const producer = only(spans, SpanKind.PRODUCER);
    const consumerSpan = only(spans, SpanKind.CONSUMER);
    expect(producer.name).toBe("taskmesh.user.registered publish");
    expect(producer.attributes["messaging.message.id"]).toBe(event.id);
    expect(parentOf(producer)).toBe(request.spanContext().spanId);
    expect(consumerSpan.name).toBe("taskmesh.user.registered process");
    expect(parentOf(consumerSpan)).toBe(idOf(producer));
    expect(consumerSpan.attributes["taskmesh.outcome"]).toBe("applied");
    // The handler (and what it appends) runs in the CONSUMER span; its commit is a child span
    // that records the transaction without becoming the active one.
    expect(got).toMatchObject({ traceId, spanId: idOf(consumerSpan) });
    const commit = only(spans, SpanKind.CLIENT, /taskmesh\.sqlite/);
    expect(commit.name).toBe("sqlite transaction");
    expect(parentOf(commit)).toBe(idOf(consumerSpan));
    expect(commit.attributes).toMatchObject({
      "db.system.name": "sqlite",
      "messaging.consumer.group.name": "telemetry-test",
    });
    expect(String(commit.attributes["db.namespace"])).toMatch(/\.db$/);

    // The gauges and counters of the kit are on the scrape.
    const scrape = await (await fetch(`http://127.0.0.1:${telemetry.metricsPort}/metrics`)).text();
    expect(
      metric(scrape, "taskmesh_consumer_deliveries_total", { consumer: "telemetry-test", outcome: "applied" }),
    ).toBe(1);
    expect(metric(scrape, "taskmesh_outbox_backlog", {})).toBe(0);
    expect(metric(scrape, "taskmesh_outbox_published_total", {})).toBeGreaterThanOrEqual(1);
  });
});

describe("logs", () => {
  it("carry trace_id and span_id inside a span, and neither outside", () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    const log = createLogger("log-test", { destination });
    const span = trace.getTracer("test").startSpan("work");
    context.with(trace.setSpan(context.active(), span), () => log.child({ component: "x" }).info("inside"));
    span.end();
    log.info("outside");
    expect(lines[0]).toMatchObject({
      msg: "inside",
      trace_id: span.spanContext().traceId,
      span_id: span.spanContext().spanId,
    });
    expect(lines[1]?.msg).toBe("outside");
    expect(lines[1]).not.toHaveProperty("trace_id");
  });
});

describe("metrics", () => {
  it("the Prometheus scrape counts N calls and k NOT_FOUND errors exactly, with a duration histogram, on the backend and the edge", async () => {
    const edgeClient = createGrpcClient(TaskService, { address: `127.0.0.1:${backendPort}` });
    const edge = new EdgeServer({
      logger,
      services: [
        {
          service: TaskService,
          impl: forwardService(TaskService, edgeClient, {
            userTokens: { verify: async () => "user-1" },
            anonymous: ALL_METHODS,
          }),
        },
      ],
    });
    const edgePort = await edge.listen(0);
    const scrape = async () => (await fetch(`http://127.0.0.1:${telemetry.metricsPort}/metrics`)).text();
    const grpcLabels = { rpc_system: "grpc", rpc_service: "taskmesh.tasks.v1.TaskService", rpc_method: "GetTask" };
    const edgeLabels = { ...grpcLabels, rpc_system: "connect_rpc" };
    const before = await scrape();

    const client = createClient(
      TaskService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${edgePort}`, httpVersion: "1.1" }),
    );
    const N = 7;
    const k = 3;
    for (let i = 0; i < N; i++) {
      await client.getTask({ taskId: i < k ? MISSING : FOUND }).catch(() => {});
    }
    const after = await scrape();
    await edge.shutdown(1000);
    edgeClient.close();

    const delta = (name: string, labels: Record<string, string>) =>
      metric(after, name, labels) - metric(before, name, labels);
    for (const labels of [grpcLabels, edgeLabels]) {
      expect(delta("rpc_server_requests_total", labels), labels.rpc_system).toBe(N);
      expect(delta("rpc_server_errors_total", { ...labels, rpc_code: "NOT_FOUND" }), labels.rpc_system).toBe(k);
      expect(delta("rpc_server_duration_seconds_count", { ...labels, rpc_code: "OK" }), labels.rpc_system).toBe(N - k);
      expect(delta("rpc_server_duration_seconds_count", { ...labels, rpc_code: "NOT_FOUND" }), labels.rpc_system).toBe(
        k,
      );
    }
  });
});

describe("breaker metrics", () => {
  it("exposes each dependency's breaker state on the scrape: 0 closed, 2 open", async () => {
    const policy = new DependencyPolicy("flaky-dep", { logger, breakerFailures: 2, halfOpenAfterMs: 60_000 });
    const scrape = async () => (await fetch(`http://127.0.0.1:${telemetry.metricsPort}/metrics`)).text();
    // metric() reads an absent series as 0, so first check the series is there at all.
    expect(await scrape()).toMatch(/^taskmesh_breaker_state\{[^}]*dependency="flaky-dep"[^}]*\} 0$/m);
    for (let i = 0; i < 2; i++) {
      await policy
        .execute(
          async () => {
            throw new ConnectError("down", Code.Unavailable);
          },
          { timeoutMs: 1000 },
        )
        .catch(() => undefined);
    }
    expect(policy.state).toBe("open");
    expect(metric(await scrape(), "taskmesh_breaker_state", { dependency: "flaky-dep" })).toBe(2);
    policy.dispose();
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
