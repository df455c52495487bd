import { join } from "node:path";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, describe, expect, it } from "vitest";
import { AnalyticsStore, MIGRATIONS } from "./analytics-store.js";

describe("analytics database migration", () => {
  const dir = tempDir("analytics-migration-");
  afterAll(() => dir.remove());

  it("adds priority to a read model of the previous schema, keeping every row (as P4) and its search entry", () => {
    const path = join(dir.path, "analytics.db");
    const before = MIGRATIONS.filter((m) => m.version <= 2);
    expect(before.map((m) => m.version)).toEqual([1, 2]);
    const old = openDatabase(path, before);
    // Rows as the previous version folded them (no priority column).
    old
      .prepare(`INSERT INTO tasks (task_id, user_id, title, notes, status, due_ms, completed_ms, version, deleted)
        VALUES ('t1', 'u1', 'Old open task', '', 'open', NULL, NULL, 1, 0),
               ('t2', 'u1', 'Old done task', '', 'completed', NULL, 5, 2, 0)`)
      .run();
    old.prepare("INSERT INTO task_search (rowid, title, notes) SELECT id, title, notes FROM tasks").run();
    old.close();

    const db = openDatabase(path, MIGRATIONS);
    try {
      const store = new AnalyticsStore(db);
      const stats = store.stats("u1", 10);
      expect(stats).toMatchObject({ created: 2, open: 1, completed: 1 });
      expect(stats.byPriority).toEqual([{ priority: 4, open: 1, completed: 1 }]);
      expect(store.search("u1", '"old"*', 10).map((h) => h.taskId)).toEqual(expect.arrayContaining(["t1", "t2"]));
      // Later events set the priority on the migrated rows.
      store.upsertTask(
        {
          taskId: "t1",
          userId: "u1",
          title: "Old open task",
          notes: "",
          status: "open",
          dueMs: undefined,
          completedMs: undefined,
          version: 2,
          priority: 1,
        },
        20,
      );
      expect(store.stats("u1", 30).byPriority).toEqual([
        { priority: 1, open: 1, completed: 0 },
        { priority: 4, open: 0, completed: 1 },
      ]);
    } finally {
      db.close();
    }
  });

  it("adds projects and labels to a read model of schema 1–3: old rows keep counting and searching, and join a project with their next event", () => {
    const path = join(dir.path, "analytics-4.db");
    const before = MIGRATIONS.filter((m) => m.version <= 3);
    expect(before.map((m) => m.version)).toEqual([1, 2, 3]);
    const old = openDatabase(path, before);
    old
      .prepare(`INSERT INTO tasks (task_id, user_id, title, notes, status, due_ms, completed_ms, version, deleted, priority)
        VALUES ('t1', 'u1', 'Old task', '', 'open', NULL, NULL, 1, 0, 2)`)
      .run();
    old.prepare("INSERT INTO task_search (rowid, title, notes) SELECT id, title, notes FROM tasks").run();
    old.close();

    const db = openDatabase(path, MIGRATIONS);
    try {
      const store = new AnalyticsStore(db);
      expect(store.stats("u1", 10)).toMatchObject({ created: 1, open: 1, byProject: [], byLabel: [] });
      expect(store.search("u1", '"old"*', 10).map((h) => h.taskId)).toEqual(["t1"]);
      const facts = {
        taskId: "t1",
        userId: "u1",
        title: "Old task",
        notes: "",
        status: "open" as const,
        dueMs: undefined,
        completedMs: undefined,
        version: 2,
        priority: 2,
        projectId: "p1",
        labelIds: ["l1"],
      };
      store.upsertTask(facts, 20);
      expect(store.stats("u1", 30)).toMatchObject({
        byProject: [{ id: "p1", open: 1, completed: 0 }],
        byLabel: [{ id: "l1", open: 1, completed: 0 }],
      });
      expect(store.search("u1", '"old"*', 10, { projectId: "p1", labelId: "l1" }).map((h) => h.taskId)).toEqual(["t1"]);
      expect(store.deleteLabel("l1", "u1", 40)).toBe("applied");
      store.upsertTask({ ...facts, version: 3 }, 50);
      expect(store.stats("u1", 60).byLabel).toEqual([]);
    } finally {
      db.close();
    }
  });

  it("moves a read model of schema 10 into per-user search ranges: each user finds only their live tasks, as before", () => {
    const path = join(dir.path, "analytics-11.db");
    const before = MIGRATIONS.filter((m) => m.version <= 10);
    expect(before.map((m) => m.version)).toEqual([1, 2, 3, 4, 10]);
    const old = openDatabase(path, before);
    old
      .prepare(`INSERT INTO tasks (task_id, user_id, title, notes, status, version, deleted, project_id)
        VALUES ('a1', 'ua', 'Water plants', 'the big fern', 'open', 1, 0, 'pa'),
               ('b1', 'ub', 'Water plants', 'in the office', 'completed', 1, 0, 'pb'),
               ('a2', 'ua', '', '', 'open', 3, 1, ''),
               ('a3', 'ua', 'Watch film', '', 'open', 1, 0, 'pa')`)
      .run();
    // As the previous version indexed them: live rows only, keyed by the task row.
    old
      .prepare("INSERT INTO task_search (rowid, title, notes) SELECT id, title, notes FROM tasks WHERE deleted = 0")
      .run();
    old.close();

    const db = openDatabase(path, MIGRATIONS);
    try {
      const store = new AnalyticsStore(db);
      const search = (user: string, match: string) => store.search(user, match, 10).map((h) => [h.taskId, h.snippet]);
      // bm25 puts the shorter row first.
      expect(search("ua", '"wat"*')).toEqual([
        ["a3", "[Watch] film"],
        ["a1", "[Water] plants"],
      ]);
      expect(search("ub", '"wat"*')).toEqual([["b1", "[Water] plants"]]);
      expect(search("ua", '"office"*')).toEqual([]);
      expect(db.prepare("SELECT count(*) FROM task_search").pluck().get()).toBe(3);
      // Folding goes on in the new layout: an update re-indexes, a new user gets a range.
      store.upsertTask(
        {
          taskId: "a1",
          userId: "ua",
          title: "Repot plants",
          notes: "",
          status: "open",
          dueMs: undefined,
          completedMs: undefined,
          version: 2,
          priority: 4,
          projectId: "pa",
        },
        5,
      );
      store.upsertTask(
        {
          taskId: "c1",
          userId: "uc",
          title: "Water lilies",
          notes: "",
          status: "open",
          dueMs: undefined,
          completedMs: undefined,
          version: 1,
          priority: 4,
        },
        5,
      );
      expect(search("ua", '"wat"*')).toEqual([["a3", "[Watch] film"]]);
      expect(search("ua", '"repot"*')).toEqual([["a1", "[Repot] plants"]]);
      expect(search("uc", '"wat"*')).toEqual([["c1", "[Water] lilies"]]);
      expect(store.search("ua", '"wat"*', 10, { projectId: "pa" }).map((h) => h.taskId)).toEqual(["a3"]);
    } finally {
      db.close();
    }
  });
});
