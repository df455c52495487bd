import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Priority, type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import type { GrpcClient } from "@taskmesh/platform";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startTasks } from "./tasks.test-util.js";

type Client = GrpcClient<typeof TaskService>;

const DAY = 86_400_000;
const DUE = Date.UTC(2031, 4, 5, 9, 0, 0);

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ConnectError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

async function listAll(client: Client, req: Parameters<Client["listTasks"]>[0] = {}): Promise<Task[]> {
  const out: Task[] = [];
  let pageToken = "";
  do {
    const res = await client.listTasks({ ...req, pageToken });
    out.push(...res.tasks);
    pageToken = res.nextPageToken;
  } while (pageToken !== "");
  return out;
}

describe("TaskService priority", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startTasks();
  });
  afterAll(() => h.stop());

  it("stores the priority given on create, and P4 when none is given", async () => {
    const c = await h.as(crypto.randomUUID());
    const urgent = (await c.createTask({ task: { title: "fix the leak", priority: Priority.P1 } })).task;
    const plain = (await c.createTask({ task: { title: "read a book" } })).task;
    expect(urgent?.priority).toBe(Priority.P1);
    expect(plain?.priority).toBe(Priority.P4);
    expect((await c.getTask({ taskId: urgent?.id ?? "" })).task?.priority).toBe(Priority.P1);
  });

  it("changes the priority on update only when present, bumping the version once", async () => {
    const c = await h.as(crypto.randomUUID());
    const id = (await c.createTask({ task: { title: "plan trip", priority: Priority.P3 } })).task?.id ?? "";
    // Another field changed: the priority stays.
    expect((await c.updateTask({ taskId: id, notes: "by train" })).task).toMatchObject({
      priority: Priority.P3,
      version: 2n,
    });
    expect((await c.updateTask({ taskId: id, priority: Priority.P2 })).task).toMatchObject({
      priority: Priority.P2,
      notes: "by train",
      version: 3n,
    });
    // The same priority again changes nothing.
    expect((await c.updateTask({ taskId: id, priority: Priority.P2 })).task?.version).toBe(3n);
    // UNSPECIFIED, sent explicitly, resets to the default P4.
    expect((await c.updateTask({ taskId: id, priority: Priority.UNSPECIFIED })).task).toMatchObject({
      priority: Priority.P4,
      version: 4n,
    });
  });

  it("rejects a priority outside P1..P4 with INVALID_ARGUMENT naming the field", async () => {
    const c = await h.as(crypto.randomUUID());
    const bad = 9 as Priority;
    const onCreate = await failure(c.createTask({ task: { title: "x", priority: bad } }));
    expect(onCreate.code).toBe(Code.InvalidArgument);
    expect(onCreate.rawMessage).toContain("task.priority");
    const id = (await c.createTask({ task: { title: "y" } })).task?.id ?? "";
    const onUpdate = await failure(c.updateTask({ taskId: id, priority: bad }));
    expect(onUpdate.code).toBe(Code.InvalidArgument);
    expect(onUpdate.rawMessage).toContain("priority");
    const onList = await failure(c.listTasks({ priority: bad }));
    expect(onList.code).toBe(Code.InvalidArgument);
    expect(onList.rawMessage).toContain("priority");
    expect((await c.getTask({ taskId: id })).task?.priority).toBe(Priority.P4);
  });

  it("filters by priority, alone and with status, walking pages in (due time, id) order without gaps", async () => {
    const c = await h.as(crypto.randomUUID());
    const made: Task[] = [];
    for (let i = 0; i < 12; i++) {
      const priority = [Priority.P1, Priority.P2, Priority.P4][i % 3] as Priority;
      const task = (
        await c.createTask({
          task: { title: `t${i}`, priority, ...(i % 4 !== 3 ? { dueTime: timestampFromMs(DUE + i * DAY) } : {}) },
        })
      ).task as Task;
      made.push(task);
    }
    await c.completeTask({ taskId: made[0]?.id ?? "" });
    const all = await listAll(c, { pageSize: 100 });
    const expected = (p: Priority) => all.filter((t) => t.priority === p).map((t) => t.id);

    for (const p of [Priority.P1, Priority.P2, Priority.P3, Priority.P4]) {
      expect((await listAll(c, { priority: p, pageSize: 2 })).map((t) => t.id)).toEqual(expected(p));
    }
    expect(expected(Priority.P1)).toHaveLength(4);
    expect(expected(Priority.P3)).toEqual([]);
    const openP1 = await listAll(c, { priority: Priority.P1, status: TaskStatus.OPEN, pageSize: 1 });
    expect(openP1.map((t) => t.id)).toEqual(expected(Priority.P1).filter((id) => id !== made[0]?.id));
    // UNSPECIFIED lists every priority.
    expect((await listAll(c, { pageSize: 5 })).map((t) => t.id)).toEqual(all.map((t) => t.id));
  });

  it("refuses a page token of another priority filter", async () => {
    const c = await h.as(crypto.randomUUID());
    for (let i = 0; i < 3; i++) await c.createTask({ task: { title: `p${i}`, priority: Priority.P2 } });
    const { nextPageToken } = await c.listTasks({ priority: Priority.P2, pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    const err = await failure(c.listTasks({ priority: Priority.P1, pageSize: 1, pageToken: nextPageToken }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("page_token");
    const unfiltered = await failure(c.listTasks({ pageSize: 1, pageToken: nextPageToken }));
    expect(unfiltered.code).toBe(Code.InvalidArgument);
  });

  it("copies the parent's priority to an occurrence", async () => {
    const userId = crypto.randomUUID();
    const c = await h.as(userId);
    const parent = (
      await c.createTask({
        task: { title: "standup", dueTime: timestampFromMs(DUE), recurrenceRule: "FREQ=DAILY", priority: Priority.P2 },
      })
    ).task as Task;
    const { task } = await h.internal().createOccurrence({
      userId,
      parentTaskId: parent.id,
      dueTime: timestampFromMs(DUE + DAY),
      idempotencyKey: `${parent.id}:next`,
    });
    expect(task?.priority).toBe(Priority.P2);
  });
});

describe("TaskService ReopenTask", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startTasks();
  });
  afterAll(() => h.stop());

  it("moves a completed task back to open, clearing complete_time and keeping its fields", async () => {
    const c = await h.as(crypto.randomUUID());
    const created = (
      await c.createTask({ task: { title: "call mum", dueTime: timestampFromMs(DUE), priority: Priority.P1 } })
    ).task as Task;
    const done = (await c.completeTask({ taskId: created.id })).task;
    expect(done?.completeTime).toBeDefined();
    const reopened = (await c.reopenTask({ taskId: created.id })).task;
    expect(reopened).toMatchObject({
      id: created.id,
      title: "call mum",
      priority: Priority.P1,
      status: TaskStatus.OPEN,
      version: 3n,
      dueTime: created.dueTime,
    });
    expect(reopened?.completeTime).toBeUndefined();
    expect((await c.getTask({ taskId: created.id })).task).toEqual(reopened);
    expect((await listAll(c, { status: TaskStatus.OPEN })).map((t) => t.id)).toEqual([created.id]);
    // Completing it again works as the first time.
    expect((await c.completeTask({ taskId: created.id })).task).toMatchObject({
      status: TaskStatus.COMPLETED,
      version: 4n,
    });
  });

  it("returns an open task unchanged, so a retried reopen is safe", async () => {
    const c = await h.as(crypto.randomUUID());
    const created = (await c.createTask({ task: { title: "water plants" } })).task as Task;
    expect((await c.reopenTask({ taskId: created.id })).task).toEqual(created);
    await c.completeTask({ taskId: created.id });
    const first = (await c.reopenTask({ taskId: created.id })).task;
    const again = (await c.reopenTask({ taskId: created.id })).task;
    expect(again).toEqual(first);
    expect(again?.version).toBe(3n);
  });

  it("answers NOT_FOUND for another user's task and for a missing one, leaving the task completed", async () => {
    const owner = await h.as(crypto.randomUUID());
    const intruder = await h.as(crypto.randomUUID());
    const id = (await owner.createTask({ task: { title: "private" } })).task?.id ?? "";
    const done = (await owner.completeTask({ taskId: id })).task;
    const theirs = await failure(intruder.reopenTask({ taskId: id }));
    expect(theirs.code).toBe(Code.NotFound);
    expect(theirs.rawMessage).toBe(`task ${id} not found`);
    const missing = crypto.randomUUID();
    const nobody = await failure(owner.reopenTask({ taskId: missing }));
    expect(nobody.code).toBe(Code.NotFound);
    expect(nobody.rawMessage).toBe(`task ${missing} not found`);
    expect((await owner.getTask({ taskId: id })).task).toEqual(done);
  });

  it("rejects a malformed task id with INVALID_ARGUMENT naming task_id", async () => {
    const c = await h.as(crypto.randomUUID());
    const err = await failure(c.reopenTask({ taskId: "not-a-uuid" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("task_id");
  });

  it("keeps an occurrence already created for the completion, and the same key still yields only that one", async () => {
    // What the recurrence service does on task.completed, done by hand: CreateOccurrence with a
    // key derived from (parent, next due). Reopen and complete again: the same call is a repeat.
    const userId = crypto.randomUUID();
    const c = await h.as(userId);
    const parent = (
      await c.createTask({ task: { title: "gym", dueTime: timestampFromMs(DUE), recurrenceRule: "FREQ=WEEKLY" } })
    ).task as Task;
    await c.completeTask({ taskId: parent.id });
    const req = {
      userId,
      parentTaskId: parent.id,
      dueTime: timestampFromMs(DUE + 7 * DAY),
      idempotencyKey: `occ:${parent.id}:${DUE + 7 * DAY}`,
    };
    const first = await h.internal().createOccurrence(req);
    expect(first.created).toBe(true);

    await c.reopenTask({ taskId: parent.id });
    // The occurrence stays.
    expect((await c.getTask({ taskId: first.task?.id ?? "" })).task?.status).toBe(TaskStatus.OPEN);
    await c.completeTask({ taskId: parent.id });
    const second = await h.internal().createOccurrence(req);
    expect(second.created).toBe(false);
    expect(second.task?.id).toBe(first.task?.id);
    expect((await listAll(c)).map((t) => t.id).sort()).toEqual([parent.id, first.task?.id].sort());
  });
});
