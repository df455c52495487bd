import { randomUUID } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Priority, type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskOrder, type TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import type { GrpcClient } from "@taskmesh/platform";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startTasks } from "./tasks.test-util.js";

type Client = GrpcClient<typeof TaskService>;

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

const titles = (ts: Task[]) => ts.map((t) => t.title);

describe("TaskService projects, labels and subtasks", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startTasks({ env: { MAX_PROJECTS_PER_USER: "4", MAX_LABELS_PER_USER: "3" } });
  });
  afterAll(() => h.stop());

  const task = async (c: Client, title: string, more: Record<string, unknown> = {}) =>
    (await c.createTask({ task: { title, ...more } })).task as Task;

  it("puts a task without project_id in the Inbox, which is listed first and cannot be renamed, archived, moved or deleted", async () => {
    const c = await h.as(randomUUID());
    const t = await task(c, "groceries");
    const work = (await c.createProject({ name: " Work " })).project;
    const { projects } = await c.listProjects({});
    expect(projects.map((p) => [p.name, p.inbox])).toEqual([
      ["Inbox", true],
      ["Work", false],
    ]);
    expect(t.projectId).toBe(projects[0]?.id);
    const inboxId = projects[0]?.id ?? "";
    for (const call of [
      () => c.updateProject({ projectId: inboxId, name: "Mine" }),
      () => c.updateProject({ projectId: inboxId, archived: true }),
      () => c.deleteProject({ projectId: inboxId }),
      () => c.moveProject({ projectId: inboxId, afterProjectId: work?.id ?? "" }),
    ])
      expect((await failure(call())).code).toBe(Code.FailedPrecondition);
    expect((await failure(c.createProject({ name: "   " }))).rawMessage).toBe("name: must not be blank");
  });

  it("renames, archives, unarchives and reorders projects, and refuses one beyond the per-user limit", async () => {
    const c = await h.as(randomUUID());
    const [a, b, d] = await Promise.all(["A", "B", "D"].map(async (name) => (await c.createProject({ name })).project));
    // Sequential creates keep their order; Promise.all may not, so sort by the answer's rank.
    const names = async (includeArchived = false) =>
      (await c.listProjects({ includeArchived })).projects.map((p) => p.name);
    expect((await names()).slice(1).sort()).toEqual(["A", "B", "D"]);
    const limit = await failure(c.createProject({ name: "E" }));
    expect(limit.code).toBe(Code.ResourceExhausted);
    expect(limit.rawMessage).toContain("at most 4 projects per user");
    await c.moveProject({ projectId: d?.id ?? "", beforeProjectId: a?.id ?? "" });
    await c.moveProject({ projectId: b?.id ?? "", afterProjectId: d?.id ?? "" });
    await c.moveProject({ projectId: a?.id ?? "", afterProjectId: b?.id ?? "" });
    expect(await names()).toEqual(["Inbox", "D", "B", "A"]);
    const renamed = (await c.updateProject({ projectId: b?.id ?? "", name: "Bee" })).project;
    expect(renamed).toMatchObject({ name: "Bee", version: 3n });
    await c.updateProject({ projectId: b?.id ?? "", archived: true });
    expect(await names()).toEqual(["Inbox", "D", "A"]);
    expect(await names(true)).toEqual(["Inbox", "D", "Bee", "A"]);
    expect((await c.updateProject({ projectId: b?.id ?? "", archived: false })).project?.archived).toBe(false);
    expect(await names()).toEqual(["Inbox", "D", "Bee", "A"]);
  });

  it("hides tasks of archived projects from the default list, refuses new tasks there, and shows them when asked", async () => {
    const c = await h.as(randomUUID());
    const p = (await c.createProject({ name: "Someday" })).project?.id ?? "";
    await task(c, "in inbox");
    await task(c, "someday task", { projectId: p });
    await c.updateProject({ projectId: p, archived: true });
    expect(titles(await listAll(c))).toEqual(["in inbox"]);
    expect(titles(await listAll(c, { includeArchived: true })).sort()).toEqual(["in inbox", "someday task"]);
    expect(titles(await listAll(c, { projectId: p }))).toEqual(["someday task"]);
    const refused = await failure(c.createTask({ task: { title: "x", projectId: p } }));
    expect([refused.code, refused.rawMessage]).toEqual([
      Code.FailedPrecondition,
      "task.project_id: the project is archived; unarchive it first",
    ]);
  });

  it("keeps a manual order: MoveTask writes only the moved row, and a neighbour in another project moves the task there", async () => {
    const c = await h.as(randomUUID());
    const [one, two, three] = [await task(c, "one"), await task(c, "two"), await task(c, "three")];
    const manual = { order: TaskOrder.MANUAL };
    expect(titles(await listAll(c, manual))).toEqual(["one", "two", "three"]);
    const moved = (await c.moveTask({ taskId: three?.id, afterTaskId: one?.id })).task;
    expect(titles(await listAll(c, manual))).toEqual(["one", "three", "two"]);
    await c.moveTask({ taskId: one?.id, beforeTaskId: two?.id });
    expect(titles(await listAll(c, manual))).toEqual(["three", "one", "two"]);
    // Only the moved tasks changed version: one row per move.
    const versions = Object.fromEntries((await listAll(c)).map((t) => [t.title, t.version]));
    expect(versions).toEqual({ one: 2n, two: 1n, three: 2n });
    const rank = moved?.rank ?? "";
    expect(rank > (one?.rank ?? "") && rank < (two?.rank ?? "")).toBe(true);
    const other = (await c.createProject({ name: "Other" })).project?.id ?? "";
    const there = await task(c, "there", { projectId: other });
    const across = (await c.moveTask({ taskId: two?.id, beforeTaskId: there.id })).task;
    expect(across?.projectId).toBe(other);
    expect(titles(await listAll(c, { ...manual, projectId: other }))).toEqual(["two", "there"]);
    const both = await failure(c.moveTask({ taskId: one?.id, afterTaskId: two?.id, beforeTaskId: there.id }));
    expect(both.code).toBe(Code.InvalidArgument);
    expect((await failure(c.moveTask({ taskId: one?.id, afterTaskId: one?.id }))).code).toBe(Code.InvalidArgument);
  });

  it("deletes a project with its tasks and subtasks", async () => {
    const c = await h.as(randomUUID());
    const p = (await c.createProject({ name: "Trip" })).project?.id ?? "";
    const parent = await task(c, "pack", { projectId: p });
    await task(c, "socks", { parentId: parent.id });
    const kept = await task(c, "kept");
    expect((await c.deleteProject({ projectId: p })).deletedTaskCount).toBe(2n);
    expect((await listAll(c, { includeArchived: true })).map((t) => t.id)).toEqual([kept.id]);
    expect((await failure(c.listTasks({ projectId: p }))).code).toBe(Code.NotFound);
    expect((await failure(c.deleteProject({ projectId: p }))).code).toBe(Code.NotFound);
  });

  it("labels tasks on create and update, filters by label, renames in one row and deletes a label from its tasks", async () => {
    const c = await h.as(randomUUID());
    const home = (await c.createLabel({ name: "home" })).label;
    const urgent = (await c.createLabel({ name: "urgent" })).label;
    const dup = await failure(c.createLabel({ name: "HOME" }));
    expect([dup.code, dup.rawMessage]).toEqual([Code.AlreadyExists, 'name: a label named "home" already exists']);
    await c.createLabel({ name: "third" });
    expect((await failure(c.createLabel({ name: "fourth" }))).code).toBe(Code.ResourceExhausted);
    const a = await task(c, "a", { labelIds: [urgent?.id, home?.id] });
    const b = await task(c, "b", { labelIds: [home?.id] });
    expect(a.labelIds).toEqual([home?.id, urgent?.id].sort());
    const updated = (await c.updateTask({ taskId: b.id, labelIds: { labelIds: [urgent?.id ?? ""] } })).task;
    expect(updated).toMatchObject({ labelIds: [urgent?.id], version: 2n });
    // Without due times the default order is by id: ask for the manual (creation) order.
    expect(titles(await listAll(c, { labelId: urgent?.id, order: TaskOrder.MANUAL }))).toEqual(["a", "b"]);
    expect(titles(await listAll(c, { labelId: home?.id }))).toEqual(["a"]);
    await c.updateLabel({ labelId: urgent?.id ?? "", name: "now" });
    expect((await c.listLabels({})).labels.map((l) => l.name)).toEqual(["home", "now", "third"]);
    expect((await c.getTask({ taskId: a.id })).task?.version).toBe(1n);
    await c.deleteLabel({ labelId: home?.id ?? "" });
    expect((await c.getTask({ taskId: a.id })).task?.labelIds).toEqual([urgent?.id]);
    const missing = await failure(c.createTask({ task: { title: "x", labelIds: [home?.id ?? ""] } }));
    expect([missing.code, missing.rawMessage]).toEqual([
      Code.NotFound,
      `task.label_ids[0]: label ${home?.id} not found`,
    ]);
  });

  it("combines project, label, priority, status and due filters with stable cursor pages in either order", async () => {
    const c = await h.as(randomUUID());
    const p = (await c.createProject({ name: "Mix" })).project?.id ?? "";
    const l = (await c.createLabel({ name: "x" })).label?.id ?? "";
    const due = (d: number) => timestampFromMs(Date.UTC(2031, 0, d));
    for (let i = 1; i <= 7; i++)
      await task(c, `t${i}`, {
        projectId: i === 7 ? "" : p,
        labelIds: i % 2 ? [l] : [],
        priority: i === 5 ? Priority.P4 : Priority.P1,
        dueTime: due(10 - i),
      });
    await c.completeTask({ taskId: (await listAll(c, { projectId: p })).find((t) => t.title === "t3")?.id });
    const filter = {
      projectId: p,
      labelId: l,
      priority: Priority.P1,
      status: TaskStatus.OPEN,
      dueAfter: due(1),
      dueBefore: due(9),
      pageSize: 1,
    };
    // t1 (open, P1, labelled, in p) is due on the 9th: due_before is exclusive.
    expect(titles(await listAll(c, filter))).toEqual([]);
    expect(titles(await listAll(c, { ...filter, dueBefore: due(10) }))).toEqual(["t1"]);
    expect(titles(await listAll(c, { projectId: p, labelId: l, pageSize: 1 }))).toEqual(["t5", "t3", "t1"]);
    expect(titles(await listAll(c, { projectId: p, labelId: l, pageSize: 2, order: TaskOrder.MANUAL }))).toEqual([
      "t1",
      "t3",
      "t5",
    ]);
    const first = await c.listTasks({ projectId: p, pageSize: 2, order: TaskOrder.MANUAL });
    const wrong = await failure(c.listTasks({ projectId: p, pageSize: 2, pageToken: first.nextPageToken }));
    expect(wrong.code).toBe(Code.InvalidArgument);
  });

  it("keeps subtasks one level deep in their parent's project, follows the parent on a move and on delete", async () => {
    const c = await h.as(randomUUID());
    const p = (await c.createProject({ name: "Home" })).project?.id ?? "";
    const parent = await task(c, "clean", { projectId: p });
    const kitchen = await task(c, "kitchen", { parentId: parent.id });
    const bath = await task(c, "bath", { parentId: parent.id });
    expect(kitchen).toMatchObject({ parentId: parent.id, projectId: p });
    const deep = await failure(c.createTask({ task: { title: "sink", parentId: kitchen.id } }));
    expect([deep.code, deep.rawMessage]).toEqual([
      Code.InvalidArgument,
      "task.parent_id: that task is itself a subtask; subtasks are one level deep",
    ]);
    const inbox = (await c.listProjects({})).projects[0]?.id ?? "";
    expect((await failure(c.createTask({ task: { title: "x", parentId: parent.id, projectId: inbox } }))).code).toBe(
      Code.InvalidArgument,
    );
    expect((await failure(c.updateTask({ taskId: bath.id, projectId: inbox }))).code).toBe(Code.InvalidArgument);
    expect((await c.moveTask({ taskId: bath.id, beforeTaskId: kitchen.id })).task?.parentId).toBe(parent.id);
    expect((await failure(c.moveTask({ taskId: bath.id, afterTaskId: parent.id }))).code).toBe(Code.InvalidArgument);
    await c.updateTask({ taskId: parent.id, projectId: inbox });
    expect((await listAll(c, { projectId: inbox, order: TaskOrder.MANUAL })).map((t) => t.title).sort()).toEqual([
      "bath",
      "clean",
      "kitchen",
    ]);
    await c.deleteTask({ taskId: parent.id });
    expect(await listAll(c)).toEqual([]);
  });

  it("refuses to complete a parent with open subtasks unless complete_children, which completes them in one go", async () => {
    const c = await h.as(randomUUID());
    const parent = await task(c, "launch");
    const [x, y] = [await task(c, "x", { parentId: parent.id }), await task(c, "y", { parentId: parent.id })];
    const refused = await failure(c.completeTask({ taskId: parent.id }));
    expect([refused.code, refused.rawMessage]).toEqual([
      Code.FailedPrecondition,
      "the task has 2 open subtasks; complete them first or set complete_children",
    ]);
    await c.completeTask({ taskId: x.id });
    expect((await failure(c.completeTask({ taskId: parent.id }))).rawMessage).toContain("1 open subtask;");
    expect((await c.completeTask({ taskId: parent.id, completeChildren: true })).task?.status).toBe(
      TaskStatus.COMPLETED,
    );
    expect((await c.getTask({ taskId: y.id })).task?.status).toBe(TaskStatus.COMPLETED);
    const closed = await failure(c.createTask({ task: { title: "late", parentId: parent.id } }));
    expect(closed.code).toBe(Code.FailedPrecondition);
  });

  it("purges a user's projects, labels and label links with their tasks (account deletion)", async () => {
    const userId = randomUUID();
    const c = await h.as(userId);
    const p = (await c.createProject({ name: "Gone" })).project?.id ?? "";
    const l = (await c.createLabel({ name: "gone" })).label?.id ?? "";
    await task(c, "x", { projectId: p, labelIds: [l] });
    expect((await h.internal().purgeUser({ userId })).deletedCount).toBe(1n);
    const db = new Database(h.dbPath, { readonly: true });
    try {
      for (const table of ["tasks", "projects", "labels", "task_labels"])
        expect([table, db.prepare(`SELECT count(*) FROM ${table} WHERE user_id = ?`).pluck().get(userId)]).toEqual([
          table,
          0,
        ]);
    } finally {
      db.close();
    }
  });

  it("answers NOT_FOUND for another user's project, label or parent task", async () => {
    const owner = await h.as(randomUUID());
    const stranger = await h.as(randomUUID());
    const p = (await owner.createProject({ name: "Private" })).project?.id ?? "";
    const l = (await owner.createLabel({ name: "secret" })).label?.id ?? "";
    const t = await task(owner, "mine", { projectId: p, labelIds: [l] });
    for (const call of [
      () => stranger.updateProject({ projectId: p, name: "x" }),
      () => stranger.deleteProject({ projectId: p }),
      () => stranger.listTasks({ projectId: p }),
      () => stranger.listTasks({ labelId: l }),
      () => stranger.updateLabel({ labelId: l, name: "x" }),
      () => stranger.deleteLabel({ labelId: l }),
      () => stranger.createTask({ task: { title: "x", projectId: p } }),
      () => stranger.createTask({ task: { title: "x", labelIds: [l] } }),
      () => stranger.createTask({ task: { title: "x", parentId: t.id } }),
      () => stranger.moveTask({ taskId: t.id, afterTaskId: t.id }),
    ])
      expect((await failure(call())).code).toBe(Code.NotFound);
    const db = new Database(h.dbPath, { readonly: true });
    try {
      expect(db.prepare("SELECT name FROM projects WHERE id = ?").pluck().get(p)).toBe("Private");
    } finally {
      db.close();
    }
  });
});
