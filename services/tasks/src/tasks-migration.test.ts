import { randomUUID } from "node:crypto";
import { Priority, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { CalendarFeedInternalService, TaskOrder } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { createGrpcClient, openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { dbFile, startTasks } from "./tasks.test-util.js";
import { MIGRATIONS } from "./tasks-store.js";

/** The schema before priorities (migrations 1–5), as the previous version created it. */
const BEFORE_PRIORITY = MIGRATIONS.filter((m) => m.version <= 5);
/** The schema before sharing: migrations 1–7 and 20 (merged before it; 21, the task counts, came beside it). */
const BEFORE_SHARING = MIGRATIONS.filter((m) => m.version <= 7 || m.version === 20);
/** The schema before projects, labels and subtasks (migrations 1–6). */
const BEFORE_PROJECTS = MIGRATIONS.filter((m) => m.version <= 6);
/** The schema before the per-user task counts (migrations 1–20). */
const BEFORE_COUNTS = MIGRATIONS.filter((m) => m.version <= 20);

describe("tasks database migration", () => {
  const dir = tempDir("tasks-migration-");
  afterAll(() => dir.remove());

  it("adds priority to a database of the previous schema without losing a row: old tasks are P4", async () => {
    expect(BEFORE_PRIORITY.map((m) => m.version)).toEqual([1, 2, 3, 4, 5]);
    const userId = randomUUID();
    const open = randomUUID();
    const done = randomUUID();
    const due = Date.UTC(2031, 0, 1, 9, 0, 0);
    // Rows written as the previous version wrote them (its INSERT had no priority column).
    const old = openDatabase(dbFile(dir.path), BEFORE_PRIORITY);
    const insert = old.prepare(`INSERT INTO tasks (id, user_id, title, notes, status, due_time, time_zone,
        recurrence_rule, reminder_offsets, parent_task_id, create_time, update_time, complete_time, version)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)`);
    insert.run(
      open,
      userId,
      "old open",
      "notes kept",
      "open",
      due,
      "Europe/Berlin",
      "RRULE:FREQ=DAILY",
      "[600]",
      1,
      1,
      null,
      1,
    );
    insert.run(done, userId, "old done", "", "completed", null, "", "", "[]", 2, 3, 3, 2);
    old
      .prepare(
        "INSERT INTO idempotency_keys (user_id, scope, key, task_id, fingerprint, create_time) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(userId, "create", "k1", open, "fp", 1);
    old.close();

    const h = await startTasks({ dir: dir.path });
    try {
      const c = await h.as(userId);
      const listed = (await c.listTasks({})).tasks;
      expect(listed.map((t) => [t.id, t.title, t.status, t.priority, t.version])).toEqual([
        [open, "old open", TaskStatus.OPEN, Priority.P4, 1n],
        [done, "old done", TaskStatus.COMPLETED, Priority.P4, 2n],
      ]);
      expect(listed[0]).toMatchObject({
        notes: "notes kept",
        timeZone: "Europe/Berlin",
        recurrenceRule: "RRULE:FREQ=DAILY",
      });
      expect(listed[0]?.reminderOffsets.map((d) => Number(d.seconds))).toEqual([600]);
      expect((await c.listTasks({ priority: Priority.P4 })).tasks).toHaveLength(2);
      expect((await c.listTasks({ priority: Priority.P1 })).tasks).toHaveLength(0);
      // The migrated tasks behave as new ones: a priority can be set, the old task reopened.
      expect((await c.updateTask({ taskId: open, priority: Priority.P1 })).task).toMatchObject({
        priority: Priority.P1,
        version: 2n,
      });
      expect((await c.reopenTask({ taskId: done })).task).toMatchObject({ status: TaskStatus.OPEN, version: 3n });
      expect(h.countRows("idempotency_keys")).toBe(1);
    } finally {
      await h.stop({ remove: false });
    }
    const db = new Database(dbFile(dir.path), { readonly: true });
    try {
      expect(db.prepare("SELECT max(version) FROM schema_migrations").pluck().get()).toBe(
        Math.max(...MIGRATIONS.map((m) => m.version)),
      );
    } finally {
      db.close();
    }
  });

  it("counts each user's existing tasks for MAX_TASKS_PER_USER, and keeps the count in step with creates and deletes", async () => {
    const counted = tempDir("tasks-migration-counts-");
    try {
      const [alice, bob] = [randomUUID(), randomUUID()];
      const old = openDatabase(dbFile(counted.path), BEFORE_COUNTS);
      const insert = old.prepare(`INSERT INTO tasks (id, user_id, title, status, create_time, update_time, version,
          priority, project_id, rank) VALUES (?, ?, 'stored before counts', 'open', 1, 1, 1, 4, 'p', ?)`);
      for (const rank of ["a0", "a1", "a2"]) insert.run(randomUUID(), alice, rank);
      insert.run(randomUUID(), bob, "a0");
      old.close();
      const h = await startTasks({ dir: counted.path, env: { MAX_TASKS_PER_USER: "4" } });
      try {
        const a = await h.as(alice);
        const fourth = (await a.createTask({ task: { title: "fourth" } })).task?.id ?? "";
        await expect(a.createTask({ task: { title: "fifth" } })).rejects.toMatchObject({
          message: expect.stringContaining("4"),
        });
        await a.deleteTask({ taskId: fourth });
        await a.createTask({ task: { title: "fourth again" } });
        const b = await h.as(bob);
        for (const title of ["2", "3", "4"]) await b.createTask({ task: { title } });
        await expect(b.createTask({ task: { title: "5" } })).rejects.toThrow();
      } finally {
        await h.stop({ remove: false });
      }
      const db = new Database(dbFile(counted.path), { readonly: true });
      try {
        // The kept number is what a count(*) gives, for every user.
        const drift = db
          .prepare(`SELECT c.user_id, c.n, (SELECT count(*) FROM tasks t WHERE t.user_id = c.user_id) AS actual
              FROM user_task_counts c WHERE c.n != actual`)
          .all();
        expect(drift).toEqual([]);
        expect(db.prepare("SELECT count(*) FROM user_task_counts WHERE n = 4").pluck().get()).toBe(2);
      } finally {
        db.close();
      }
    } finally {
      counted.remove();
    }
  });

  it("adds calendar feeds to a database of the schema before them, and the stored tasks show in a new feed", async () => {
    const before = tempDir("tasks-migration-feeds-");
    try {
      const userId = randomUUID();
      const id = randomUUID();
      const old = openDatabase(dbFile(before.path), BEFORE_PROJECTS);
      old
        .prepare(`INSERT INTO tasks (id, user_id, title, status, due_time, create_time, update_time, version)
          VALUES (?, ?, 'stored before feeds', 'open', ?, 1, 1, 1)`)
        .run(id, userId, Date.UTC(2031, 0, 1, 9));
      old.close();
      const h = await startTasks({ dir: before.path });
      try {
        const { urlPath } = await (await h.as(userId)).rotateCalendarFeed({});
        const secret = urlPath.slice("/calendar/".length, -".ics".length);
        const feeds = createGrpcClient(CalendarFeedInternalService, { address: h.address });
        try {
          const { calendar } = await feeds.renderCalendarFeed({ secret });
          expect(calendar).toContain(`UID:${id}@taskmesh`);
          expect(calendar).toContain("DTSTART:20310101T090000Z");
        } finally {
          feeds.close();
        }
      } finally {
        await h.stop({ remove: false });
      }
    } finally {
      before.remove();
    }
  });

  it("puts every existing task in its user's new Inbox, in the order ListTasks showed them, and keeps them workable", async () => {
    expect(BEFORE_PROJECTS.map((m) => m.version)).toEqual([1, 2, 3, 4, 5, 6]);
    const sub = tempDir("tasks-migration-7-");
    try {
      const [alice, bob] = [randomUUID(), randomUUID()];
      const ids = Array.from({ length: 70 }, () => randomUUID());
      const old = openDatabase(dbFile(sub.path), BEFORE_PROJECTS);
      const insert = old.prepare(`INSERT INTO tasks (id, user_id, title, status, due_time, create_time, update_time,
          version, priority) VALUES (?, ?, ?, 'open', ?, 1, 1, 1, ?)`);
      // 70 tasks (more than 62, so the migrated ranks carry into a second base-62 digit), due in
      // reverse order of their titles; the last ten without due time.
      for (const [i, id] of ids.entries())
        insert.run(id, alice, `a${i}`, i < 60 ? Date.UTC(2031, 0, 1) + (60 - i) * 60_000 : null, 2);
      insert.run(randomUUID(), bob, "bob's", null, 4);
      old.close();

      const h = await startTasks({ dir: sub.path });
      try {
        const c = await h.as(alice);
        const before = (await c.listTasks({ pageSize: 100 })).tasks;
        const { projects } = await c.listProjects({});
        expect(projects.map((p) => [p.name, p.inbox])).toEqual([["Inbox", true]]);
        const inbox = projects[0]?.id ?? "";
        expect(inbox).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(new Set(before.map((t) => t.projectId))).toEqual(new Set([inbox]));
        const manual = (await c.listTasks({ pageSize: 100, order: TaskOrder.MANUAL })).tasks;
        expect(manual.map((t) => t.id)).toEqual(before.map((t) => t.id));
        // A new task goes after them; a migrated task can be moved and get a subtask.
        const added = (await c.createTask({ task: { title: "new" } })).task;
        expect(added?.projectId).toBe(inbox);
        const first = manual[0]?.id ?? "";
        await c.moveTask({ taskId: added?.id ?? "", beforeTaskId: first });
        expect((await c.listTasks({ pageSize: 1, order: TaskOrder.MANUAL })).tasks[0]?.title).toBe("new");
        expect((await c.createTask({ task: { title: "sub", parentId: first } })).task?.parentId).toBe(first);
        const bobs = await (await h.as(bob)).listProjects({});
        expect(bobs.projects).toHaveLength(1);
        expect(bobs.projects[0]?.id).not.toBe(inbox);
      } finally {
        await h.stop({ remove: false });
      }
    } finally {
      sub.remove();
    }
  });

  it("adds sharing to a database of the schema before it: projects and tasks kept, the project shareable", async () => {
    expect(BEFORE_SHARING.map((m) => m.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 20]);
    const sub = tempDir("tasks-migration-8-");
    try {
      const [owner, friend] = [randomUUID(), randomUUID()];
      const [projectId, taskId] = [randomUUID(), randomUUID()];
      const old = openDatabase(dbFile(sub.path), BEFORE_SHARING);
      old
        .prepare(`INSERT INTO projects (id, user_id, name, inbox, archived, rank, create_time, update_time, version)
          VALUES (?, ?, 'Garden', 0, 0, 'a1', 1, 1, 1)`)
        .run(projectId, owner);
      old
        .prepare(`INSERT INTO tasks (id, user_id, title, status, create_time, update_time, version, project_id, rank)
          VALUES (?, ?, 'stored before sharing', 'open', 1, 1, 1, ?, 'a0')`)
        .run(taskId, owner, projectId);
      old.close();
      const h = await startTasks({ dir: sub.path });
      try {
        const c = await h.as(owner);
        expect((await c.listTasks({ projectId })).tasks.map((t) => [t.id, t.title])).toEqual([
          [taskId, "stored before sharing"],
        ]);
        const f = await h.as(friend, "friend@example.test");
        const inv = (await c.inviteToProject({ projectId, email: "friend@example.test", role: 1 })).invitation;
        await f.acceptInvitation({ invitationId: inv?.id ?? "" });
        expect((await f.getTask({ taskId })).task?.title).toBe("stored before sharing");
        const db = new Database(h.dbPath, { readonly: true });
        try {
          expect(db.prepare("SELECT version, name FROM schema_migrations WHERE version = 8").get()).toEqual({
            version: 8,
            name: "shared projects",
          });
        } finally {
          db.close();
        }
      } finally {
        await h.stop({ remove: false });
      }
    } finally {
      sub.remove();
    }
  });
});
