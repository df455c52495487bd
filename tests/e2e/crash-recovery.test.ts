import { Code } from "@connectrpc/connect";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Api, type E2E, fails, grpcApi, type JsonObject, ok, signUp, startE2E } from "./harness.js";

let e2e: E2E;
let api: Api;
beforeAll(async () => {
  e2e = await startE2E();
  api = grpcApi(e2e.system.endpoints.gateway);
});
afterAll(async () => {
  await e2e?.stop();
});

/**
 * The first call after a restart may find the gateway's channel still backing off from the
 * refused connections of the outage; a client retries UNAVAILABLE, so does this (for at most 10 s).
 */
async function afterRestart<T extends { ok: boolean; codeName?: string }>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const result = await call();
    if (result.ok || result.codeName !== "Unavailable" || Date.now() > deadline) return result;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const task = (title: string) => ({
  task: {
    title,
    dueTime: "2030-01-07T08:00:00Z",
    timeZone: "Europe/Paris",
    recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
    reminderOffsets: ["900s"],
  },
});

describe("a backend killed with SIGKILL", () => {
  it("keeps every task whose CreateTask was acknowledged before the kill", async () => {
    const me = await signUp(api);
    const acked: string[] = [];
    for (let i = 0; i < 10; i++) {
      const created = ok(await api.call(TaskService.method.createTask, task(`acked ${i}`), me.token));
      acked.push((created.task as JsonObject).id as string);
    }
    // Right after the last acknowledgement: no graceful shutdown, no chance to flush anything.
    const pid = e2e.system.services.tasks?.pid;
    await e2e.system.kill("tasks", "SIGKILL");
    fails(await api.call(TaskService.method.listTasks, {}, me.token), Code.Unavailable);

    await e2e.system.restart("tasks");
    expect(e2e.system.services.tasks?.pid).not.toBe(pid);
    const last = ok(
      await afterRestart(() => api.call(TaskService.method.getTask, { taskId: acked.at(-1) as string }, me.token)),
    );
    expect(last.task).toMatchObject({ title: "acked 9", timeZone: "Europe/Paris", reminderOffsets: ["900s"] });
    const listed = ok(await api.call(TaskService.method.listTasks, { pageSize: 100 }, me.token));
    expect((listed.tasks as JsonObject[]).map((t) => t.id).sort()).toEqual([...acked].sort());
  });

  it("users: an account registered right before the kill still logs in after the restart", async () => {
    const me = await signUp(api);
    await e2e.system.kill("users", "SIGKILL");
    await e2e.system.restart("users");
    ok(await afterRestart(() => api.call(TaskService.method.listTasks, {}, me.token)));
    ok(await afterRestart(() => api.call(UserService.method.login, { email: me.email, password: me.password })));
  });
});
