import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import type { GrpcClient } from "@taskmesh/platform";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startTasks } from "./tasks.test-util.js";

type Client = GrpcClient<typeof TaskService>;

const DAY = 86_400_000;
const MONDAY_9_BERLIN = Date.UTC(2030, 0, 7, 8, 0, 0); // 2030-01-07 09:00 in Europe/Berlin

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

describe("TaskService", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startTasks();
  });
  afterAll(() => h.stop());

  it("creates, reads, updates, completes and deletes a task", async () => {
    const c = await h.as(crypto.randomUUID());
    const { task } = await c.createTask({ task: { title: "buy milk", notes: "2 litres" } });
    expect(task).toMatchObject({ title: "buy milk", notes: "2 litres", status: TaskStatus.OPEN, version: 1n });
    expect(task?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(task?.dueTime).toBeUndefined();
    const id = task?.id ?? "";

    expect((await c.getTask({ taskId: id })).task).toEqual(task);

    const updated = (await c.updateTask({ taskId: id, title: "buy oat milk" })).task;
    expect(updated).toMatchObject({ title: "buy oat milk", notes: "2 litres", version: 2n });

    const done = (await c.completeTask({ taskId: id })).task;
    expect(done).toMatchObject({ status: TaskStatus.COMPLETED, version: 3n });
    expect(done?.completeTime).toBeDefined();

    await c.deleteTask({ taskId: id });
    expect((await failure(c.getTask({ taskId: id }))).code).toBe(Code.NotFound);
    // AIP-135: deleting what is gone is NOT_FOUND.
    expect((await failure(c.deleteTask({ taskId: id }))).code).toBe(Code.NotFound);
  });

  it("stores a weekly recurring task with its time zone and reminder offsets and returns them", async () => {
    const c = await h.as(crypto.randomUUID());
    const { task } = await c.createTask({
      task: {
        title: "team sync",
        dueTime: timestampFromMs(MONDAY_9_BERLIN),
        timeZone: "Europe/Berlin",
        recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
        reminderOffsets: [durationFromMs(15 * 60_000), durationFromMs(DAY)],
      },
    });
    const got = (await c.getTask({ taskId: task?.id ?? "" })).task;
    expect(got?.recurrenceRule).toBe("RRULE:FREQ=WEEKLY;BYDAY=MO");
    expect(got?.timeZone).toBe("Europe/Berlin");
    expect(timestampMs(got?.dueTime ?? timestampFromMs(0))).toBe(MONDAY_9_BERLIN);
    expect(got?.reminderOffsets.map((d) => Number(d.seconds))).toEqual([900, 86_400]);
    expect((await c.listTasks({})).tasks.map((t) => t.id)).toEqual([task?.id]);
  });

  it("accepts an RRULE: line with EXDATE lines", async () => {
    const c = await h.as(crypto.randomUUID());
    const rule = "RRULE:FREQ=DAILY;COUNT=10\nEXDATE:20300108T080000Z";
    const { task } = await c.createTask({
      task: { title: "daily", dueTime: timestampFromMs(MONDAY_9_BERLIN), recurrenceRule: rule },
    });
    expect(task?.recurrenceRule).toBe(rule);
  });

  it("returns the same task for a repeated idempotency key and creates nothing new", async () => {
    const c = await h.as(crypto.randomUUID());
    const req = { task: { title: "pay rent" }, idempotencyKey: crypto.randomUUID() };
    const first = await c.createTask(req);
    const before = h.countRows();
    const again = await c.createTask(req);
    expect(again.task?.id).toBe(first.task?.id);
    expect(h.countRows()).toBe(before);
    expect((await c.listTasks({})).tasks).toHaveLength(1);
  });

  it("does not resurrect a deleted task when its create is retried", async () => {
    const c = await h.as(crypto.randomUUID());
    const req = { task: { title: "one-off" }, idempotencyKey: crypto.randomUUID() };
    const { task } = await c.createTask(req);
    await c.deleteTask({ taskId: task?.id ?? "" });
    const err = await failure(c.createTask(req));
    expect(err.code).toBe(Code.NotFound);
    expect((await c.listTasks({})).tasks).toEqual([]);
  });

  it("keeps the same idempotency key of two users independent", async () => {
    const key = crypto.randomUUID();
    const a = await (await h.as(crypto.randomUUID())).createTask({ task: { title: "a" }, idempotencyKey: key });
    const b = await (await h.as(crypto.randomUUID())).createTask({ task: { title: "b" }, idempotencyKey: key });
    expect(b.task?.id).not.toBe(a.task?.id);
    expect(b.task?.title).toBe("b");
  });

  it("refuses an idempotency key reused for a different task", async () => {
    const c = await h.as(crypto.randomUUID());
    const key = crypto.randomUUID();
    await c.createTask({ task: { title: "first" }, idempotencyKey: key });
    const err = await failure(c.createTask({ task: { title: "second" }, idempotencyKey: key }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("idempotency_key");
    expect((await c.listTasks({})).tasks.map((t) => t.title)).toEqual(["first"]);
  });

  it("updates only the fields present, replaces reminders, and clears the due time", async () => {
    const c = await h.as(crypto.randomUUID());
    const { task } = await c.createTask({
      task: {
        title: "dentist",
        notes: "bring card",
        dueTime: timestampFromMs(MONDAY_9_BERLIN),
        timeZone: "Europe/Berlin",
        reminderOffsets: [durationFromMs(3_600_000)],
      },
    });
    const id = task?.id ?? "";
    const moved = (
      await c.updateTask({
        taskId: id,
        dueTime: timestampFromMs(MONDAY_9_BERLIN + DAY),
        reminderOffsets: { offsets: [durationFromMs(600_000), durationFromMs(7_200_000)] },
      })
    ).task;
    expect(moved).toMatchObject({ title: "dentist", notes: "bring card", timeZone: "Europe/Berlin", version: 2n });
    expect(timestampMs(moved?.dueTime ?? timestampFromMs(0))).toBe(MONDAY_9_BERLIN + DAY);
    expect(moved?.reminderOffsets.map((d) => Number(d.seconds))).toEqual([600, 7200]);
    expect(timestampMs(moved?.updateTime ?? timestampFromMs(0))).toBeGreaterThanOrEqual(
      timestampMs(task?.updateTime ?? timestampFromMs(0)),
    );

    // Reminders need a due time: clearing it alone is refused, with them it is fine.
    const refused = await failure(c.updateTask({ taskId: id, clearDueTime: true }));
    expect(refused.code).toBe(Code.InvalidArgument);
    expect(refused.rawMessage).toContain("clear_due_time");
    const cleared = (await c.updateTask({ taskId: id, clearDueTime: true, reminderOffsets: { offsets: [] } })).task;
    expect(cleared?.dueTime).toBeUndefined();
    expect(cleared?.reminderOffsets).toEqual([]);
    expect(cleared?.version).toBe(3n);

    // An update that changes nothing does not bump the version.
    expect((await c.updateTask({ taskId: id, title: "dentist" })).task?.version).toBe(3n);
  });

  it("edits a completed task and completes a completed task without changing it", async () => {
    const c = await h.as(crypto.randomUUID());
    const id = (await c.createTask({ task: { title: "file taxes" } })).task?.id ?? "";
    const done = (await c.completeTask({ taskId: id })).task;
    const again = (await c.completeTask({ taskId: id })).task;
    expect(again).toEqual(done);
    const edited = (await c.updateTask({ taskId: id, notes: "filed on time" })).task;
    expect(edited).toMatchObject({ status: TaskStatus.COMPLETED, notes: "filed on time", version: 3n });
  });

  it("rejects bad input with INVALID_ARGUMENT naming the field and stores nothing", async () => {
    const c = await h.as(crypto.randomUUID());
    const due = timestampFromMs(MONDAY_9_BERLIN);
    const cases: [string, Parameters<Client["createTask"]>[0], string][] = [
      ["no task", {}, "task"],
      ["missing title", { task: {} }, "task.title"],
      ["blank title", { task: { title: "   " } }, "task.title"],
      ["501-character title", { task: { title: "x".repeat(501) } }, "task.title"],
      ["oversized notes", { task: { title: "t", notes: "n".repeat(10_001) } }, "task.notes"],
      [
        "malformed RRULE",
        { task: { title: "t", dueTime: due, recurrenceRule: "FREQ=SOMETIMES" } },
        "task.recurrence_rule",
      ],
      ["RRULE without due time", { task: { title: "t", recurrenceRule: "FREQ=DAILY" } }, "task.recurrence_rule"],
      [
        "RRULE with DTSTART",
        { task: { title: "t", dueTime: due, recurrenceRule: "DTSTART:20300101T000000Z\nRRULE:FREQ=DAILY" } },
        "task.recurrence_rule",
      ],
      ["unknown time zone", { task: { title: "t", timeZone: "Mars/Olympus" } }, "task.time_zone"],
      [
        "reminder without due time",
        { task: { title: "t", reminderOffsets: [durationFromMs(60_000)] } },
        "task.reminder_offsets",
      ],
      [
        "reminder over 30 days",
        { task: { title: "t", dueTime: due, reminderOffsets: [durationFromMs(31 * DAY)] } },
        "task.reminder_offsets",
      ],
      [
        "negative reminder",
        { task: { title: "t", dueTime: due, reminderOffsets: [durationFromMs(-1000)] } },
        "task.reminder_offsets",
      ],
      [
        "duplicate reminders",
        { task: { title: "t", dueTime: due, reminderOffsets: [durationFromMs(60_000), durationFromMs(60_000)] } },
        "task.reminder_offsets[1]",
      ],
      ["over-long idempotency key", { task: { title: "t" }, idempotencyKey: "k".repeat(129) }, "idempotency_key"],
      ["bad input with a key", { task: { title: "" }, idempotencyKey: crypto.randomUUID() }, "task.title"],
    ];
    const before = h.countRows();
    const keysBefore = h.countRows("idempotency_keys");
    for (const [name, req, field] of cases) {
      const err = await failure(c.createTask(req));
      expect(err.code, name).toBe(Code.InvalidArgument);
      expect(err.rawMessage, name).toContain(`${field}`);
    }
    expect(h.countRows()).toBe(before);
    expect(h.countRows("idempotency_keys")).toBe(keysBefore);
  });

  it("rejects a bad task id, page size and page token with INVALID_ARGUMENT naming the field", async () => {
    const c = await h.as(crypto.randomUUID());
    for (const call of [
      () => c.getTask({ taskId: "not-a-uuid" }),
      () => c.updateTask({ taskId: "42", title: "x" }),
      () => c.completeTask({ taskId: "" }),
      () => c.deleteTask({ taskId: "../etc" }),
    ]) {
      const err = await failure(call());
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain("task_id");
    }
    const big = await failure(c.listTasks({ pageSize: 101 }));
    expect([big.code, big.rawMessage.includes("page_size")]).toEqual([Code.InvalidArgument, true]);
    for (const pageToken of ["garbage!", "e30", Buffer.from('{"v":1,"k":"x"}').toString("base64url")]) {
      const err = await failure(c.listTasks({ pageToken }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain("page_token");
    }
  });

  it("refuses a page token under other filters or from another user", async () => {
    const c = await h.as(crypto.randomUUID());
    for (let i = 0; i < 3; i++) await c.createTask({ task: { title: `t${i}` } });
    const { nextPageToken } = await c.listTasks({ pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    const other = await failure(c.listTasks({ pageSize: 1, pageToken: nextPageToken, status: TaskStatus.OPEN }));
    expect([other.code, other.rawMessage.includes("page_token")]).toEqual([Code.InvalidArgument, true]);
    const d = await h.as(crypto.randomUUID());
    const stolen = await failure(d.listTasks({ pageSize: 1, pageToken: nextPageToken }));
    expect(stolen.code).toBe(Code.InvalidArgument);
  });

  it("refuses a call without a valid user token", async () => {
    const err = await failure(h.anonymous().listTasks({}));
    expect(err.code).toBe(Code.Unauthenticated);
    const forged = await failure(
      h.anonymous().listTasks({}, { headers: { authorization: "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0." } }),
    );
    expect(forged.code).toBe(Code.Unauthenticated);
  });

  it("walks 25 tasks in pages of 10 without duplicates or gaps, in (due time, id) order", async () => {
    const c = await h.as(crypto.randomUUID());
    const created: Task[] = [];
    for (let i = 0; i < 25; i++) {
      // Some share a due time (ties broken by id), some have none (last).
      const due = i % 5 === 0 ? undefined : timestampFromMs(MONDAY_9_BERLIN + (i % 7) * DAY);
      created.push(
        (await c.createTask({ task: { title: `task ${i}`, ...(due ? { dueTime: due } : {}) } })).task as Task,
      );
    }
    const pages: Task[][] = [];
    let pageToken = "";
    do {
      const res = await c.listTasks({ pageSize: 10, pageToken });
      pages.push(res.tasks);
      pageToken = res.nextPageToken;
    } while (pageToken);
    expect(pages.map((p) => p.length)).toEqual([10, 10, 5]);
    const seen = pages.flat();
    const key = (t: Task) => [t.dueTime ? timestampMs(t.dueTime) : Number.MAX_SAFE_INTEGER, t.id] as const;
    const expected = [...created].sort((a, b) => {
      const [da, ia] = key(a);
      const [db, ib] = key(b);
      return da - db || (ia < ib ? -1 : ia > ib ? 1 : 0);
    });
    expect(seen.map((t) => t.id)).toEqual(expected.map((t) => t.id));
    expect(seen.slice(-5).every((t) => t.dueTime === undefined)).toBe(true);
  });

  it("keeps a walk stable while tasks are added mid-walk", async () => {
    const c = await h.as(crypto.randomUUID());
    const original = new Set<string>();
    for (let i = 0; i < 25; i++) {
      const t = await c.createTask({ task: { title: `t${i}`, dueTime: timestampFromMs(MONDAY_9_BERLIN + i * DAY) } });
      original.add(t.task?.id ?? "");
    }
    const seen: string[] = [];
    let pageToken = "";
    let page = 0;
    do {
      const res = await c.listTasks({ pageSize: 10, pageToken });
      seen.push(...res.tasks.map((t) => t.id));
      pageToken = res.nextPageToken;
      if (page++ === 0) {
        // One before the cursor (never seen) and one after it (seen once).
        await c.createTask({ task: { title: "early", dueTime: timestampFromMs(MONDAY_9_BERLIN - DAY) } });
        await c.createTask({ task: { title: "late", dueTime: timestampFromMs(MONDAY_9_BERLIN + 100 * DAY) } });
      }
    } while (pageToken);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...original].every((id) => seen.includes(id))).toBe(true);
    expect(seen).toHaveLength(26);
  });

  it("filters by status and by due range (after inclusive, before exclusive, undated excluded)", async () => {
    const c = await h.as(crypto.randomUUID());
    const mk = async (title: string, dueMs?: number) =>
      (await c.createTask({ task: { title, ...(dueMs !== undefined ? { dueTime: timestampFromMs(dueMs) } : {}) } }))
        .task?.id ?? "";
    const t0 = MONDAY_9_BERLIN;
    const a = await mk("a", t0);
    const b = await mk("b", t0 + DAY);
    const d = await mk("c", t0 + 2 * DAY);
    const undated = await mk("undated");
    await c.completeTask({ taskId: b });

    const ids = async (req: Parameters<Client["listTasks"]>[0]) => (await listAll(c, req)).map((t) => t.id);
    expect(await ids({})).toEqual([a, b, d, undated]);
    expect(await ids({ status: TaskStatus.COMPLETED })).toEqual([b]);
    expect(await ids({ status: TaskStatus.OPEN })).toEqual([a, d, undated]);
    expect(await ids({ dueAfter: timestampFromMs(t0 + DAY) })).toEqual([b, d]);
    expect(await ids({ dueBefore: timestampFromMs(t0 + DAY) })).toEqual([a]);
    expect(await ids({ dueAfter: timestampFromMs(t0), dueBefore: timestampFromMs(t0 + 2 * DAY) })).toEqual([a, b]);
    expect(await ids({ status: TaskStatus.OPEN, dueAfter: timestampFromMs(t0 + DAY), pageSize: 1 })).toEqual([d]);
  });

  it("answers NOT_FOUND for another user's task and leaves it unchanged", async () => {
    const owner = await h.as(crypto.randomUUID());
    const intruder = await h.as(crypto.randomUUID());
    const { task } = await owner.createTask({ task: { title: "private", notes: "secret" } });
    const taskId = task?.id ?? "";
    // Thunks, called one at a time: a rejected promise not yet awaited is an unhandled rejection.
    for (const call of [
      () => intruder.getTask({ taskId }),
      () => intruder.updateTask({ taskId, title: "pwned" }),
      () => intruder.completeTask({ taskId }),
      () => intruder.deleteTask({ taskId }),
    ]) {
      const err = await failure(call());
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toBe(`task ${taskId} not found`);
    }
    expect((await intruder.listTasks({})).tasks).toEqual([]);
    expect((await owner.getTask({ taskId })).task).toEqual(task);
  });
});

describe("TaskService limits", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startTasks({ env: { MAX_TASKS_PER_USER: "3" } });
  });
  afterAll(() => h.stop());

  it("refuses a create beyond MAX_TASKS_PER_USER with RESOURCE_EXHAUSTED, per user", async () => {
    const c = await h.as(crypto.randomUUID());
    for (let i = 0; i < 3; i++) await c.createTask({ task: { title: `t${i}` } });
    const err = await failure(c.createTask({ task: { title: "one too many" } }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(h.countRows()).toBe(3);
    await (await h.as(crypto.randomUUID())).createTask({ task: { title: "someone else" } });
  });
});

describe("TaskInternalService", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startTasks();
  });
  afterAll(() => h.stop());

  it("refuses a caller without a service token, including a user", async () => {
    const userId = crypto.randomUUID();
    const req = { userId, parentTaskId: crypto.randomUUID(), dueTime: timestampFromMs(0), idempotencyKey: "k" };
    expect((await failure(h.internal({ token: false }).createOccurrence(req))).code).toBe(Code.Unauthenticated);
    expect((await failure(h.internal({ token: false }).purgeUser({ userId }))).code).toBe(Code.Unauthenticated);
    // A valid user token is not a service token.
    const userToken = await h.token(userId);
    const asUser = await failure(
      h.internal({ token: false }).purgeUser({ userId }, { headers: { authorization: `Bearer ${userToken}` } }),
    );
    expect(asUser.code).toBe(Code.Unauthenticated);
  });

  it("creates an occurrence copying its parent, once per idempotency key", async () => {
    const userId = crypto.randomUUID();
    const c = await h.as(userId);
    const parent = (
      await c.createTask({
        task: {
          title: "water plants",
          notes: "balcony too",
          dueTime: timestampFromMs(MONDAY_9_BERLIN),
          timeZone: "Europe/Berlin",
          recurrenceRule: "FREQ=WEEKLY",
          reminderOffsets: [durationFromMs(600_000)],
        },
      })
    ).task as Task;
    const req = {
      userId,
      parentTaskId: parent.id,
      dueTime: timestampFromMs(MONDAY_9_BERLIN + 7 * DAY),
      idempotencyKey: `${parent.id}:1`,
    };
    const first = await h.internal().createOccurrence(req);
    expect(first.created).toBe(true);
    expect(first.task).toMatchObject({
      userId,
      title: "water plants",
      notes: "balcony too",
      timeZone: "Europe/Berlin",
      recurrenceRule: parent.recurrenceRule,
      parentTaskId: parent.id,
      status: TaskStatus.OPEN,
      version: 1n,
    });
    expect(first.task?.reminderOffsets.map((d) => Number(d.seconds))).toEqual([600]);
    expect(timestampMs(first.task?.dueTime ?? timestampFromMs(0))).toBe(MONDAY_9_BERLIN + 7 * DAY);
    const rows = h.countRows();

    const again = await h.internal().createOccurrence(req);
    expect(again.created).toBe(false);
    expect(again.task?.id).toBe(first.task?.id);
    expect(h.countRows()).toBe(rows);
    // The owner sees it as their own task.
    expect((await c.getTask({ taskId: first.task?.id ?? "" })).task?.parentTaskId).toBe(parent.id);
    // A user's own create key with the same text is a different namespace.
    const own = await c.createTask({ task: { title: "mine" }, idempotencyKey: req.idempotencyKey });
    expect(own.task?.id).not.toBe(first.task?.id);
  });

  it("answers NOT_FOUND when the parent is not that user's task", async () => {
    const owner = crypto.randomUUID();
    const parent = (await (await h.as(owner)).createTask({ task: { title: "p", dueTime: timestampFromMs(0) } })).task;
    const rows = h.countRows();
    const err = await failure(
      h.internal().createOccurrence({
        userId: crypto.randomUUID(),
        parentTaskId: parent?.id ?? "",
        dueTime: timestampFromMs(DAY),
        idempotencyKey: "x",
      }),
    );
    expect(err.code).toBe(Code.NotFound);
    expect(h.countRows()).toBe(rows);
  });

  it("purges every task and idempotency key of one user, and is safe to repeat", async () => {
    const gone = crypto.randomUUID();
    const kept = crypto.randomUUID();
    const g = await h.as(gone);
    for (let i = 0; i < 4; i++) await g.createTask({ task: { title: `g${i}` }, idempotencyKey: `key-${i}` });
    const k = await h.as(kept);
    const keptTask = (await k.createTask({ task: { title: "stays" }, idempotencyKey: "key-0" })).task;

    expect((await h.internal().purgeUser({ userId: gone })).deletedCount).toBe(4n);
    expect((await g.listTasks({})).tasks).toEqual([]);
    // The key is free again for that user: a new create makes a new task.
    expect((await g.createTask({ task: { title: "fresh" }, idempotencyKey: "key-0" })).task?.title).toBe("fresh");
    await g.deleteTask({ taskId: (await g.listTasks({})).tasks[0]?.id ?? "" });
    expect((await h.internal().purgeUser({ userId: gone })).deletedCount).toBe(0n);
    expect((await h.internal().purgeUser({ userId: gone })).deletedCount).toBe(0n);
    expect((await k.getTask({ taskId: keptTask?.id ?? "" })).task?.title).toBe("stays");
  });
});
