/**
 * A real Prometheus (Debian's `prometheus`) scrapes the whole system as `npm start` runs it, with
 * the scrape config `npm run prometheus:config` generates (here on free ports, 1 s interval) and
 * mesh/observability/rules.yml loaded. After a little traffic through the gateway and one poison
 * event, its HTTP API shows every target up and the key series, and every PromQL expression of the
 * rules and the dashboards evaluates without error and reads only metric names that exist.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { freePort, stopChild, tempDir, waitFor } from "@taskmesh/platform/testing";
import { prometheusConfig } from "@taskmesh/runner";
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectJsonApi, type E2E, fails, grpcApi, ok, signUp, startE2E } from "../e2e/harness.js";
import { grafanaToPromql, metricNames } from "./promql.js";
import { RULES_DIR, RULES_FILE, readRuleGroups } from "./promtool.js";

interface QueryAnswer {
  status: "success" | "error";
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

describe("Prometheus scraping the running system", () => {
  let e2e: E2E;
  let prometheus: ChildProcess;
  let api = "";
  let prometheusLog = "";
  const store = tempDir("taskmesh-prometheus-");

  const query = async (expr: string): Promise<QueryAnswer> => {
    const res = await fetch(`${api}/api/v1/query`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ query: expr }),
      signal: AbortSignal.timeout(10_000),
    });
    return (await res.json()) as QueryAnswer;
  };
  const series = async (expr: string) => {
    const a = await query(expr);
    if (a.status !== "success") throw new Error(`${expr}: ${a.error}`);
    return a.data?.result ?? [];
  };
  const liveNames = async () =>
    new Set(((await (await fetch(`${api}/api/v1/label/__name__/values`)).json()) as { data: string[] }).data);

  beforeAll(async () => {
    e2e = await startE2E();
    const configFile = join(store.path, "prometheus.yml");
    writeFileSync(
      configFile,
      prometheusConfig(e2e.system.endpoints.metrics, { interval: "1s", ruleFiles: [RULES_FILE] }),
    );
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      "prometheus",
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(store.path, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    prometheus.stdout?.on("data", (b: Buffer) => (prometheusLog += b));
    prometheus.stderr?.on("data", (b: Buffer) => (prometheusLog += b));
    await waitFor("prometheus to be ready", async () => (await fetch(`${api}/-/ready`).catch(() => undefined))?.ok, {
      timeoutMs: 30_000,
      intervalMs: 200,
      detail: () => `\n${prometheusLog}`,
    });

    // Traffic through the gateway: sign up, create and complete a task, a read of a missing one
    // (NOT_FOUND), a list, over gRPC and Connect JSON.
    const grpc = grpcApi(e2e.system.endpoints.gateway);
    const json = connectJsonApi(e2e.system.endpoints.gateway);
    const me = await signUp(grpc);
    for (const api of [grpc, json]) {
      const task = ok(await api.call(TaskService.method.createTask, { task: { title: "scraped" } }, me.token)).task as {
        id: string;
      };
      ok(await api.call(TaskService.method.completeTask, { taskId: task.id }, me.token));
      ok(await api.call(TaskService.method.listTasks, {}, me.token));
      fails(await api.call(TaskService.method.getTask, { taskId: randomUUID() }, me.token), Code.NotFound);
    }
    // One poison event (not an Envelope) on a subject analytics and reminders consume: each
    // dead-letters it, so the dead-letter counter exists as it would after a real bad event.
    const nc = await connect({ servers: e2e.system.endpoints.nats });
    await nc.jetstream().publish("taskmesh.task.created", new TextEncoder().encode("not a protobuf envelope"));
    await nc.close();
  }, 120_000);

  afterAll(async () => {
    if (prometheus) await stopChild(prometheus);
    await e2e?.stop();
    store.remove();
  });

  it("has every process as a target, each with its service label, and all up", async () => {
    const processes = Object.keys(e2e.system.endpoints.metrics).sort();
    expect(processes.length).toBeGreaterThanOrEqual(7);
    const up = await waitFor(
      "every target up",
      async () => {
        const s = await series('up{job="taskmesh"}');
        return s.length === processes.length && s.every((x) => x.value[1] === "1") ? s : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(up.map((s) => s.metric.service).sort()).toEqual(processes.map((p) => p.replace(/\.\d+$/, "")));
  });

  it("has the key series: RED per method, outbox backlog, consumer lag, dead letters, breaker state", async () => {
    const required: Array<[string, string]> = [
      ["requests per method at the edge", 'rpc_server_requests_total{service="gateway",rpc_method="CreateTask"}'],
      ["requests per method on the backend", 'rpc_server_requests_total{service="tasks",rpc_method="CompleteTask"}'],
      ["errors by code", 'rpc_server_errors_total{service="tasks",rpc_method="GetTask",rpc_code="NOT_FOUND"}'],
      ["durations per method", 'rpc_server_duration_seconds_bucket{service="tasks",rpc_method="ListTasks",le="+Inf"}'],
      ["outbox backlog", 'taskmesh_outbox_backlog{service="tasks"}'],
      ["events published", 'taskmesh_outbox_published_total{service="tasks"}'],
      ["consumer deliveries", 'taskmesh_consumer_deliveries_total{service="analytics",outcome="applied"}'],
      ["consumer lag", 'taskmesh_consumer_lag{service="analytics"}'],
      ["dead letters", 'taskmesh_consumer_dead_letters_total{service="analytics"}'],
      ["breaker state", 'taskmesh_breaker_state{service="gateway",dependency="tasks"}'],
      ["recording rule (RED)", 'service_method:rpc_server_requests:rate5m{service="gateway",rpc_method="CreateTask"}'],
    ];
    const missing = await waitFor(
      "the key series",
      async () => {
        const absent: string[] = [];
        for (const [what, expr] of required) if ((await series(expr)).length === 0) absent.push(`${what}: ${expr}`);
        return absent.length === 0 ? ["none"] : undefined;
      },
      {
        timeoutMs: 30_000,
        intervalMs: 500,
        detail: () => "",
      },
    ).catch((err: Error) => [err.message]);
    expect(missing).toEqual(["none"]);
    // The poison event was counted, once per consumer that received it.
    const dead = await series('sum(taskmesh_consumer_dead_letters_total{service="analytics"})');
    expect(Number(dead[0]?.value[1])).toBeGreaterThanOrEqual(1);
  });

  const ruleExprs = () =>
    readRuleGroups().flatMap((g) => g.rules.map((r) => ({ where: `rules.yml ${r.record ?? r.alert}`, expr: r.expr })));
  const dashboardExprs = () =>
    readdirSync(join(RULES_DIR, "dashboards"))
      .filter((f) => f.endsWith(".json"))
      .flatMap((f) => {
        const d = JSON.parse(readFileSync(join(RULES_DIR, "dashboards", f), "utf8")) as {
          panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
        };
        return d.panels.flatMap((p) =>
          p.targets.map((t) => ({ where: `${f} "${p.title}"`, expr: grafanaToPromql(t.expr) })),
        );
      });

  it("evaluates every rule and dashboard expression without error, reading only metric names that exist", async () => {
    const exprs = [...ruleExprs(), ...dashboardExprs()];
    expect(exprs.length).toBeGreaterThan(35);
    const errors: string[] = [];
    for (const { where, expr } of exprs) {
      const a = await query(expr);
      if (a.status !== "success") errors.push(`${where}: ${a.error}`);
    }
    expect(errors).toEqual([]);
    // Recording rules are evaluated every second; their outputs are names too, so wait for them.
    const wanted = [...new Set(exprs.flatMap((e) => metricNames(e.expr)))];
    let unknown: string[] = [];
    await waitFor(
      "every referenced metric name in the live series",
      async () => {
        const live = await liveNames();
        unknown = wanted.filter((n) => !live.has(n));
        return unknown.length === 0;
      },
      { timeoutMs: 15_000, intervalMs: 500 },
    ).catch(() => undefined);
    expect(unknown).toEqual([]);
    expect(wanted).toEqual(expect.arrayContaining(["rpc_server_requests_total", "taskmesh_consumer_lag", "up"]));
  });

  it("catches a misspelt metric name and a malformed expression (the checks can fail)", async () => {
    const live = await liveNames();
    const misspelt = 'sum by (service) (rate(rpc_server_request_total{service=~".*"}[1m]))';
    // Prometheus answers a query for an unknown metric with success and no data: only the name check sees it.
    expect((await query(misspelt)).status).toBe("success");
    expect(metricNames(misspelt).filter((n) => !live.has(n))).toEqual(["rpc_server_request_total"]);
    const malformed = await query("sum by service (rate(rpc_server_requests_total[1m]))");
    expect(malformed.status).toBe("error");
    expect(malformed.error).toMatch(/parse error/);
  });
});
