// Issue 5, "done when": scrape real service processes' Prometheus endpoints (started by the runner,
// as `npm start` starts them) before and after known traffic through the gateway, and find every
// counter moved by exactly the traffic sent: the edge's RED metrics on the gateway, the backend's
// on tasks, and the outbox relay's published events. Labels and names: packages/platform/src/telemetry/metrics.ts.
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Api, connectJsonApi, type E2E, fails, grpcApi, ok, type SignedUp, signUp, startE2E } from "./harness.js";

/** One sample of the Prometheus text format: `name{a="x",b="y"} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (0.0.4): comments skipped, label values unescaped. */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

/** A scrape: the sum of the series of `name` whose labels include `labels` (0 when none does). */
type Scrape = (name: string, labels?: Record<string, string>) => number;

async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  expect(res.status, url).toBe(200);
  const samples = parsePrometheus(await res.text());
  return (name, labels = {}) =>
    samples
      .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((sum, s) => sum + s.value, 0);
}

/** Polls `check` every 100 ms until it holds; fails naming `what` after `timeoutMs`. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const TASKS = TaskService.typeName;
const CREATES = 5; // over gRPC
const MISSING_GRPC = 3; // GetTask of ids that do not exist, over gRPC
const MISSING_CONNECT = 2; // the same over Connect JSON

describe("metrics of running services (Prometheus GET /metrics)", () => {
  let e2e: E2E;
  let grpc: Api;
  let connect: Api;
  let user: SignedUp;
  let gatewayUrl: string;
  let tasksUrl: string;

  beforeAll(async () => {
    // The gateway forwards task calls to tasks; users issues the token. The others are not needed.
    e2e = await startE2E({ services: ["users", "tasks", "gateway"] });
    grpc = grpcApi(e2e.system.endpoints.gateway);
    connect = connectJsonApi(e2e.system.endpoints.gateway);
    user = await signUp(grpc);
    gatewayUrl = e2e.system.endpoints.metrics.gateway ?? "";
    tasksUrl = e2e.system.endpoints.metrics.tasks ?? "";
  }, 120_000);
  afterAll(async () => {
    await e2e?.stop();
  });

  it("serves each process's metrics on the port the runner gave it", () => {
    for (const name of ["users", "tasks", "gateway"]) {
      const s = e2e.system.services[name];
      expect(e2e.system.endpoints.metrics[name]).toBe(`http://127.0.0.1:${s?.metricsPort}/metrics`);
    }
  });

  it("counts requests, errors by code and durations per method, at the edge and on the backend, by exactly the calls made", async () => {
    const [gwBefore, tasksBefore] = await Promise.all([scrape(gatewayUrl), scrape(tasksUrl)]);
    // The outbox relay publishes one task.created per create; wait for earlier events (none expected) to settle.
    const publishedBefore = tasksBefore("taskmesh_outbox_published_total");

    for (let i = 0; i < CREATES; i++) {
      ok(await grpc.call(TaskService.method.createTask, { task: { title: `metrics ${i}` } }, user.token));
    }
    for (let i = 0; i < MISSING_GRPC; i++) {
      fails(await grpc.call(TaskService.method.getTask, { taskId: randomUUID() }, user.token), Code.NotFound);
    }
    for (let i = 0; i < MISSING_CONNECT; i++) {
      fails(await connect.call(TaskService.method.getTask, { taskId: randomUUID() }, user.token), Code.NotFound);
    }

    const [gw, tasks] = await Promise.all([scrape(gatewayUrl), scrape(tasksUrl)]);
    const delta = (after: Scrape, before: Scrape, name: string, labels: Record<string, string>) =>
      after(name, labels) - before(name, labels);
    const method = (system: string, m: string, extra: Record<string, string> = {}) => ({
      rpc_system: system,
      rpc_service: TASKS,
      rpc_method: m,
      ...extra,
    });

    // The edge (gateway): rpc_system is how the caller spoke to it.
    const edge = (name: string, labels: Record<string, string>) => delta(gw, gwBefore, name, labels);
    expect(edge("rpc_server_requests_total", method("grpc", "CreateTask"))).toBe(CREATES);
    expect(edge("rpc_server_errors_total", method("grpc", "CreateTask"))).toBe(0);
    expect(edge("rpc_server_duration_seconds_count", method("grpc", "CreateTask", { rpc_code: "OK" }))).toBe(CREATES);
    expect(edge("rpc_server_requests_total", method("grpc", "GetTask"))).toBe(MISSING_GRPC);
    expect(edge("rpc_server_errors_total", method("grpc", "GetTask", { rpc_code: "NOT_FOUND" }))).toBe(MISSING_GRPC);
    expect(edge("rpc_server_requests_total", method("connect_rpc", "GetTask"))).toBe(MISSING_CONNECT);
    expect(edge("rpc_server_errors_total", method("connect_rpc", "GetTask", { rpc_code: "NOT_FOUND" }))).toBe(
      MISSING_CONNECT,
    );
    expect(edge("rpc_server_duration_seconds_count", method("connect_rpc", "GetTask", { rpc_code: "NOT_FOUND" }))).toBe(
      MISSING_CONNECT,
    );

    // The backend (tasks) sees every forwarded call over grpc-js, whatever the caller spoke at the edge.
    const backend = (name: string, labels: Record<string, string>) => delta(tasks, tasksBefore, name, labels);
    expect(backend("rpc_server_requests_total", method("grpc", "CreateTask"))).toBe(CREATES);
    expect(backend("rpc_server_errors_total", method("grpc", "CreateTask"))).toBe(0);
    expect(backend("rpc_server_duration_seconds_count", method("grpc", "CreateTask", { rpc_code: "OK" }))).toBe(
      CREATES,
    );
    expect(backend("rpc_server_requests_total", method("grpc", "GetTask"))).toBe(MISSING_GRPC + MISSING_CONNECT);
    expect(backend("rpc_server_errors_total", method("grpc", "GetTask", { rpc_code: "NOT_FOUND" }))).toBe(
      MISSING_GRPC + MISSING_CONNECT,
    );
    // A histogram's +Inf bucket is its count.
    expect(
      backend("rpc_server_duration_seconds_bucket", method("grpc", "GetTask", { rpc_code: "NOT_FOUND", le: "+Inf" })),
    ).toBe(MISSING_GRPC + MISSING_CONNECT);

    // The relay publishes the creates' events after the calls return: one per create, no more.
    let published = 0;
    await eventually("tasks' outbox relay publishes the task.created events", async () => {
      published = (await scrape(tasksUrl))("taskmesh_outbox_published_total") - publishedBefore;
      return published >= CREATES;
    });
    expect(published).toBe(CREATES);
    expect((await scrape(tasksUrl))("taskmesh_outbox_backlog")).toBe(0);
  });
});
