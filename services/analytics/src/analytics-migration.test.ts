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
});
