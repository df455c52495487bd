import { Code } from "@connectrpc/connect";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { builtServices } from "@taskmesh/runner";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Api,
  connectJsonApi,
  type E2E,
  fails,
  grpcApi,
  type JsonObject,
  ok,
  type SignedUp,
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

/** Mondays at 09:00 in Paris (08:00 UTC in winter), a reminder 15 minutes before. */
const weeklyReview = {
  title: "Weekly review",
  notes: "inbox zero, plan the week",
  dueTime: "2030-01-07T08:00:00Z",
  timeZone: "Europe/Paris",
  recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
  reminderOffsets: ["900s"],
};

describe.each(apis)("through the gateway with %s", (_, makeApi) => {
  let api: Api;
  beforeAll(() => {
    api = makeApi();
  });

  it("a user registers, logs in, creates a weekly recurring task with a reminder, lists, updates, completes and deletes it", async () => {
    const me = await signUp(api);
    const profile = ok(await api.call(UserService.method.getMe, {}, me.token));
    expect((profile.user as JsonObject).id).toBe(me.userId);
    expect((profile.user as JsonObject).email).toBe(me.email);

    const created = ok(await api.call(TaskService.method.createTask, { task: weeklyReview }, me.token))
      .task as JsonObject;
    expect(created).toMatchObject({
      userId: me.userId,
      title: "Weekly review",
      notes: "inbox zero, plan the week",
      status: "TASK_STATUS_OPEN",
      dueTime: "2030-01-07T08:00:00Z",
      timeZone: "Europe/Paris",
      reminderOffsets: ["900s"],
    });
    expect(created.recurrenceRule).toContain("FREQ=WEEKLY;BYDAY=MO");
    const id = created.id as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    expect(ok(await api.call(TaskService.method.getTask, { taskId: id }, me.token)).task).toEqual(created);
    const listed = ok(await api.call(TaskService.method.listTasks, {}, me.token));
    expect((listed.tasks as JsonObject[]).map((t) => t.id)).toEqual([id]);

    const updated = ok(
      await api.call(
        TaskService.method.updateTask,
        { taskId: id, title: "Weekly review with the team", reminderOffsets: { offsets: ["1800s", "900s"] } },
        me.token,
      ),
    ).task as JsonObject;
    expect(updated).toMatchObject({
      id,
      title: "Weekly review with the team",
      notes: "inbox zero, plan the week",
      timeZone: "Europe/Paris",
      recurrenceRule: created.recurrenceRule,
      reminderOffsets: ["1800s", "900s"],
      status: "TASK_STATUS_OPEN",
    });
    expect(Number(updated.version)).toBeGreaterThan(Number(created.version ?? 0));

    const completed = ok(await api.call(TaskService.method.completeTask, { taskId: id }, me.token)).task as JsonObject;
    expect(completed.status).toBe("TASK_STATUS_COMPLETED");
    expect(completed.completeTime).toBeTruthy();
    const done = ok(await api.call(TaskService.method.listTasks, { status: "TASK_STATUS_COMPLETED" }, me.token));
    expect((done.tasks as JsonObject[]).map((t) => t.id)).toEqual([id]);
    const openTasks = async () =>
      (ok(await api.call(TaskService.method.listTasks, { status: "TASK_STATUS_OPEN" }, me.token)).tasks ??
        []) as JsonObject[];
    if ((builtServices() as string[]).includes("recurrence")) {
      // The recurrence service answers task.completed with the next occurrence: next Monday, 09:00 in Paris.
      const deadline = Date.now() + 15_000;
      let next = await openTasks();
      while (next.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        next = await openTasks();
      }
      expect(next).toHaveLength(1);
      expect(next[0]).toMatchObject({
        parentTaskId: id,
        dueTime: "2030-01-14T08:00:00Z",
        timeZone: "Europe/Paris",
        status: "TASK_STATUS_OPEN",
      });
    } else {
      expect(await openTasks()).toEqual([]);
    }

    ok(await api.call(TaskService.method.deleteTask, { taskId: id }, me.token));
    fails(await api.call(TaskService.method.getTask, { taskId: id }, me.token), Code.NotFound);
    const left = (ok(await api.call(TaskService.method.listTasks, {}, me.token)).tasks ?? []) as JsonObject[];
    expect(left.map((t) => t.id)).not.toContain(id);
    expect(left.every((t) => t.status === "TASK_STATUS_OPEN")).toBe(true);
  });

  describe("a second user", () => {
    let owner: SignedUp;
    let other: SignedUp;
    let task: JsonObject;
    beforeAll(async () => {
      owner = await signUp(api);
      other = await signUp(api);
      task = ok(await api.call(TaskService.method.createTask, { task: weeklyReview }, owner.token)).task as JsonObject;
    });

    it("cannot read, update, complete or delete the first user's task: NOT_FOUND, as if it did not exist", async () => {
      const taskId = task.id as string;
      fails(await api.call(TaskService.method.getTask, { taskId }, other.token), Code.NotFound);
      fails(await api.call(TaskService.method.updateTask, { taskId, title: "mine now" }, other.token), Code.NotFound);
      fails(await api.call(TaskService.method.completeTask, { taskId }, other.token), Code.NotFound);
      fails(await api.call(TaskService.method.deleteTask, { taskId }, other.token), Code.NotFound);
      // The task is untouched.
      expect(ok(await api.call(TaskService.method.getTask, { taskId }, owner.token)).task).toEqual(task);
    });

    it("does not see the first user's task in their list", async () => {
      expect(ok(await api.call(TaskService.method.listTasks, {}, other.token)).tasks ?? []).toEqual([]);
      const mine = ok(await api.call(TaskService.method.listTasks, {}, owner.token));
      expect((mine.tasks as JsonObject[]).map((t) => t.id)).toEqual([task.id]);
    });
  });
});
