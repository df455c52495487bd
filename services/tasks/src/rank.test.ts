import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_RANK_LENGTH } from "./rank.js";
import { MIGRATIONS, TasksStore } from "./tasks-store.js";

describe("manual order ranks", () => {
  const dir = tempDir("tasks-rank-");
  const db = openDatabase(join(dir.path, "tasks.db"), MIGRATIONS);
  const store = new TasksStore(db);
  afterAll(() => {
    db.close();
    dir.remove();
  });
  const user = randomUUID();
  let now = 1;

  it("renumbers the siblings, keeping their order, once moves into the same gap would make a rank too long", () => {
    const project = store.projects.create(user, "p", now, 10);
    const ids = ["a", "b", "c", "d"].map((title) => {
      const r = store.create(
        user,
        () => ({
          title,
          notes: "",
          dueTime: null,
          timeZone: "",
          recurrenceRule: "",
          reminderOffsets: [],
          parentTaskId: null,
          priority: 4,
          projectId: project.id,
          labelIds: [],
          parentId: null,
          assigneeId: null,
        }),
        { id: randomUUID(), now: ++now, maxTasks: 100 },
      );
      if (r.kind !== "created") throw new Error(r.kind);
      return r.task.id;
    });
    const order = () =>
      store
        .list({
          userId: user,
          status: null,
          priority: null,
          dueAfterMs: null,
          dueBeforeMs: null,
          projectId: project.id,
          labelId: null,
          hideArchived: true,
          order: "manual",
          after: null,
          limit: 10,
        })
        .map((r) => [r.task.title, r.task.rank] as const);
    // c and d take turns right after a: always the same gap, each move lengthening the key.
    let longest = 0;
    for (let i = 0; i < 600; i++) {
      const moved = store.move(user, ids[2 + (i % 2)] as string, { after: ids[0] as string }, ++now);
      longest = Math.max(longest, moved.rank.length);
    }
    // 600 moves into one gap would make a ~100-character key; renumbering kept every one short.
    expect(longest).toBeGreaterThan(20);
    expect(longest).toBeLessThanOrEqual(MAX_RANK_LENGTH);
    expect(order().map(([t]) => t)).toEqual(["a", "d", "c", "b"]);
  });

  it("renumbers projects the same way", () => {
    const other = randomUUID();
    const [x, y, z] = ["x", "y", "z"].map((n) => store.projects.create(other, n, ++now, 10));
    for (let i = 0; i < 600; i++)
      store.projects.move(other, (i % 2 ? y : z)?.id as string, { after: x?.id as string }, ++now);
    const listed = store.projects.list(other, false, ++now);
    expect(listed.map((p) => p.name)).toEqual(["Inbox", "x", "y", "z"]);
    expect(Math.max(...listed.map((p) => p.rank.length))).toBeLessThanOrEqual(MAX_RANK_LENGTH);
  });
});
