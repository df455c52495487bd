import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { waitFor } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Api,
  connectJsonApi,
  type E2E,
  fails,
  grpcApi,
  type JsonObject,
  ok,
  signUp,
  startE2E,
} from "./harness.js";

let e2e: E2E;
beforeAll(async () => {
  e2e = await startE2E();
});
afterAll(async () => {
  await e2e?.stop();
});

const apis: Array<[string, () => Api]> = [
  ["gRPC over h2c", () => grpcApi(e2e.system.endpoints.gateway)],
  ["Connect JSON over HTTP/1.1", () => connectJsonApi(e2e.system.endpoints.gateway)],
];

describe.each(apis)("priority and reopen through the gateway with %s", (_, makeApi) => {
  let api: Api;
  beforeAll(() => {
    api = makeApi();
  });

  it("creates a P1 task, filters by priority, completes and reopens it, and analytics counts it open again", async () => {
    const me = await signUp(api);
    const urgent = ok(
      await api.call(
        TaskService.method.createTask,
        { task: { title: "Renew visa", priority: "PRIORITY_P1" } },
        me.token,
      ),
    ).task as JsonObject;
    const plain = ok(await api.call(TaskService.method.createTask, { task: { title: "Sort photos" } }, me.token))
      .task as JsonObject;
    expect(urgent.priority).toBe("PRIORITY_P1");
    expect(plain.priority).toBe("PRIORITY_P4");
    const id = urgent.id as string;

    const p1 = ok(await api.call(TaskService.method.listTasks, { priority: "PRIORITY_P1" }, me.token));
    expect((p1.tasks as JsonObject[]).map((t) => t.id)).toEqual([id]);
    const raised = ok(
      await api.call(TaskService.method.updateTask, { taskId: plain.id as string, priority: "PRIORITY_P2" }, me.token),
    ).task as JsonObject;
    expect(raised.priority).toBe("PRIORITY_P2");

    ok(await api.call(TaskService.method.completeTask, { taskId: id }, me.token));
    const reopened = ok(await api.call(TaskService.method.reopenTask, { taskId: id }, me.token)).task as JsonObject;
    expect(reopened).toMatchObject({ id, status: "TASK_STATUS_OPEN", priority: "PRIORITY_P1" });
    expect(reopened.completeTime).toBeUndefined();

    // Another user cannot reopen it, nor learn it exists; a missing id is the same NOT_FOUND.
    const other = await signUp(api);
    fails(await api.call(TaskService.method.reopenTask, { taskId: id }, other.token), Code.NotFound);
    fails(await api.call(TaskService.method.reopenTask, { taskId: randomUUID() }, me.token), Code.NotFound);
    fails(await api.call(TaskService.method.reopenTask, { taskId: "nope" }, me.token), Code.InvalidArgument, /task_id/);

    // The task.updated of the reopen reaches analytics over NATS: both tasks open, none completed.
    const stats = await waitFor("analytics to fold the reopen", async () => {
      const s = ok(await api.call(AnalyticsService.method.getStats, {}, me.token)).stats as JsonObject | undefined;
      return s && Number(s.openCount ?? 0) === 2 && Number(s.completedCount ?? 0) === 0 ? s : undefined;
    });
    expect(Number(stats.createdCount)).toBe(2);
  }, 30_000);
});
