// Replicas as `npm start -- --replicas tasks=2` runs them (issue 4, item 2): real processes,
// real nats-server, one tasks.db shared by both tasks processes. Callers get both addresses as
// one grpc-js target and balance round_robin with outlier detection.
// The focused version (every ejection rule, in-process servers) is outlier.test.ts.

import { readFileSync } from "node:fs";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { GetTaskRequestSchema, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { createGrpcClient, type GrpcClient, type OutlierDetectionOptions } from "@taskmesh/platform";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Api, type E2E, grpcApi, ok, type SignedUp, signUp, startE2E } from "../e2e/harness.js";

describe("a service run as two replicas", () => {
  let e2e: E2E;
  let api: Api;
  let user: SignedUp;
  const clients: GrpcClient<typeof TaskService>[] = [];
  const auth = () => ({ authorization: `Bearer ${user.token}` });
  const port = (name: string) => e2e.system.services[name]?.port as number;
  const pid = (name: string) => e2e.system.services[name]?.pid as number;
  const client = (address: string, outlierDetection?: OutlierDetectionOptions | false) => {
    const c = createGrpcClient(TaskService, { address, outlierDetection, metadata: auth });
    clients.push(c);
    return c;
  };
  const outcome = (p: Promise<unknown>) =>
    p.then(
      () => "OK",
      (err: ConnectError) => Code[err.code] as string,
    );
  const tally = (codes: string[]) => {
    const t: Record<string, number> = {};
    for (const c of codes) t[c] = (t[c] ?? 0) + 1;
    return t;
  };

  beforeAll(async () => {
    e2e = await startE2E({ replicas: { tasks: 2, analytics: 2 } });
    api = grpcApi(e2e.system.endpoints.gateway);
    user = await signUp(api);
  }, 120_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await e2e?.stop();
  });

  it("answers from one database: a task created through one replica is read and changed through the other", async () => {
    const one = client(`127.0.0.1:${port("tasks")}`, false);
    const two = client(`127.0.0.1:${port("tasks.2")}`, false);
    const created = await one.createTask({ task: { title: "shared" }, idempotencyKey: "k-shared" });
    const id = created.task?.id as string;
    expect((await two.getTask({ taskId: id })).task?.title).toBe("shared");
    await two.updateTask({ taskId: id, title: "changed on two" });
    expect((await one.getTask({ taskId: id })).task?.title).toBe("changed on two");
    // Idempotency keys are shared too: the repeat on the other replica returns the same task.
    const again = await two.createTask({ task: { title: "shared" }, idempotencyKey: "k-shared" });
    expect(again.task?.id).toBe(id);
  });

  it("loses no event with two relays over one outbox and two consumers on one durable: the read model counts each task once", async () => {
    // Both tasks replicas run an outbox relay over the one outbox, both analytics replicas pull
    // from one durable consumer; the read model must still count each task exactly once.
    const fresh = await signUp(api);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = ok(await api.call(TaskService.method.createTask, { task: { title: `r${i}` } }, fresh.token));
      ids.push((r.task as { id: string }).id);
    }
    for (const taskId of ids.slice(0, 5)) ok(await api.call(TaskService.method.completeTask, { taskId }, fresh.token));
    const stats = async () =>
      ok(await api.call(AnalyticsService.method.getStats, {}, fresh.token)).stats as Record<string, unknown>;
    const deadline = Date.now() + 15_000;
    let last: Record<string, unknown> = {};
    while (Date.now() < deadline) {
      last = await stats();
      if (last.createdCount === "12" && last.completedCount === "5") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect([last.createdCount, last.completedCount]).toEqual(["12", "5"]);
    for (const name of ["tasks", "tasks.2", "analytics", "analytics.2"]) {
      const log = readFileSync(e2e.system.services[name]?.logFile as string, "utf8");
      expect(log, name).not.toMatch(/"level":(50|60)/); // no error or fatal line
    }
  });

  it("keeps the gateway's calls succeeding while one replica is down (it balances over both)", async () => {
    await e2e.system.kill("tasks");
    try {
      const codes: string[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await api.call(TaskService.method.createTask, { task: { title: `while down ${i}` } }, user.token);
        codes.push(r.ok ? "OK" : r.codeName);
        const l = await api.call(TaskService.method.listTasks, {}, user.token);
        codes.push(l.ok ? "OK" : l.codeName);
      }
      expect(tally(codes)).toEqual({ OK: 20 });
    } finally {
      await e2e.system.restart("tasks");
    }
    ok(await api.call(TaskService.method.listTasks, {}, user.token));
  });

  it("ejects a replica that hangs (SIGSTOP) from a client's rotation, and the calls keep succeeding", async () => {
    const detect = { intervalMs: 500, minRequests: 3, baseEjectionMs: 60_000 };
    const balanced = client(e2e.system.endpoints.targets.tasks as string, detect);
    const plain = client(e2e.system.endpoints.targets.tasks as string, false);
    const list = (c: GrpcClient<typeof TaskService>, timeoutMs: number) =>
      outcome(c.listTasks({ pageSize: 5 }, { timeoutMs }));
    // Both channels connected to both replicas first (a new connection to a stopped process would
    // never become READY, and round_robin only picks READY ones).
    for (let i = 0; i < 4; i++) {
      expect(await list(balanced, 2000)).toBe("OK");
      expect(await list(plain, 2000)).toBe("OK");
    }

    const stopped = pid("tasks.2");
    process.kill(stopped, "SIGSTOP");
    try {
      // Without outlier detection, every other call goes to the hung replica and times out.
      const before = await Promise.all(Array.from({ length: 10 }, () => list(plain, 300)));
      expect(tally(before)).toEqual({ OK: 5, DeadlineExceeded: 5 });
      // With it: calls to the hung replica time out until the end of an interval in which they
      // were more than half of its calls...
      const until = Date.now() + 2500;
      while (Date.now() < until) await list(balanced, 150);
      // ...and from then on round_robin only picks the other one.
      const after: string[] = [];
      for (let i = 0; i < 20; i++) after.push(await list(balanced, 2000));
      expect(tally(after)).toEqual({ OK: 20 });
    } finally {
      process.kill(stopped, "SIGCONT");
    }
  });

  it("keeps both replicas in rotation when they answer NOT_FOUND and INVALID_ARGUMENT to every call", async () => {
    const balanced = client(e2e.system.endpoints.targets.tasks as string, {
      intervalMs: 300,
      minRequests: 3,
      baseEjectionMs: 60_000,
    });
    const codes: string[] = [];
    const until = Date.now() + 1500;
    for (let i = 0; Date.now() < until; i++) {
      const taskId = i % 2 === 0 ? crypto.randomUUID() : "not-a-uuid";
      codes.push(await outcome(balanced.getTask({ taskId }, { timeoutMs: 2000 })));
    }
    expect(Object.keys(tally(codes)).sort()).toEqual(["InvalidArgument", "NotFound"]);
    // Which replica answers each of the next calls, on the same channel.
    const peers: string[] = [];
    for (let i = 0; i < 20; i++) peers.push(await peerOfGetTask(balanced.channel, user.token));
    expect(tally(peers)).toEqual({ [`127.0.0.1:${port("tasks")}`]: 10, [`127.0.0.1:${port("tasks.2")}`]: 10 });
  });
});

/** Calls GetTask (a random id: NOT_FOUND) on `channel` and returns the address of the replica that answered. */
function peerOfGetTask(channel: grpc.Client, token: string): Promise<string> {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const request = create(GetTaskRequestSchema, { taskId: crypto.randomUUID() });
  return new Promise((resolve) => {
    const call = channel.makeUnaryRequest(
      `/${TaskService.typeName}/${TaskService.method.getTask.name}`,
      (m: typeof request) => Buffer.from(toBinary(GetTaskRequestSchema, m)),
      (b: Buffer) => b,
      request,
      metadata,
      { deadline: Date.now() + 2000 },
      () => resolve(call.getPeer()),
    );
  });
}
