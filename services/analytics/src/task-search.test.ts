import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { AnalyticsStore, MIGRATIONS, type TaskFacts } from "./analytics-store.js";
import { ftsQuery } from "./search-query.js";
import { TaskSearch } from "./task-search.js";

const dir = tempDir("task-search-");
afterAll(() => dir.remove());

let n = 0;
const facts = (userId: string, title: string, extra: Partial<TaskFacts> = {}): TaskFacts => ({
  taskId: randomUUID(), // not in row order, so ties show which order breaks them
  userId,
  title,
  notes: "",
  status: "open",
  dueMs: undefined,
  completedMs: undefined,
  version: 1,
  priority: 4,
  ...extra,
});
const q = (text: string) => ftsQuery(text) as string;

describe("TaskSearch (the analytics store's search index)", () => {
  let db: ReturnType<typeof openDatabase>;
  let store: AnalyticsStore;
  beforeEach(() => {
    db?.close();
    db = openDatabase(join(dir.path, `s${++n}.db`), MIGRATIONS);
    store = new AnalyticsStore(db);
  });

  it("finds by word prefix and by whole word, in titles and notes", () => {
    const t = facts("u1", "Buy groceries", { notes: "milk and eggs" });
    store.upsertTask(t, 1);
    store.upsertTask(facts("u1", "Book flights"), 1);
    expect(store.search("u1", q("gro"), 20).map((h) => h.taskId)).toEqual([t.taskId]);
    expect(store.search("u1", q("groceries"), 20).map((h) => h.taskId)).toEqual([t.taskId]);
    expect(store.search("u1", q("eg"), 20)).toEqual([
      { taskId: t.taskId, title: "Buy groceries", snippet: "milk and [eggs]", completed: false },
    ]);
    expect(store.search("u1", q("b"), 20)).toHaveLength(2);
  });

  it("never returns another user's rows, whatever the query", () => {
    const mine = facts("u1", "Shared words here");
    store.upsertTask(mine, 1);
    for (let i = 0; i < 50; i++) store.upsertTask(facts(`other-${i}`, "Shared words here"), 1);
    for (const text of ["shared", "s", "w h", "here"])
      expect(store.search("u1", q(text), 50).map((h) => h.taskId)).toEqual([mine.taskId]);
    expect(store.search("nobody", q("shared"), 50)).toEqual([]);
    // A task handed to another user leaves the first user's results with its next version.
    store.upsertTask({ ...mine, userId: "other-0", version: 2 }, 2);
    expect(store.search("u1", q("shared"), 50)).toEqual([]);
    expect(store.search("other-0", q("shared"), 50).map((h) => h.taskId)).toContain(mine.taskId);
  });

  it("ranks exactly as one FTS5 table keyed by the task row did: bm25, then task id, with each kept row's snippet", () => {
    // The index and query this replaced, over the same rows, as the reference.
    db.exec("CREATE VIRTUAL TABLE ref USING fts5(title, notes, tokenize = 'unicode61 remove_diacritics 2')");
    const words = ["alpha", "bravo", "alphabet", "alpine"];
    for (let i = 0; i < 300; i++) {
      const user = i % 3 === 0 ? "u1" : `u${i % 7}`;
      // Varied lengths and repeats give different bm25 scores; many rows tie.
      const title = `Task ${words[i % 4]} ${i % 5 === 0 ? `${words[i % 4]} extra words` : "report"}`;
      store.upsertTask(facts(user, title, { notes: i % 4 === 0 ? "alpha in the notes" : "notes" }), 1);
    }
    db.exec("INSERT INTO ref (rowid, title, notes) SELECT id, title, notes FROM tasks WHERE deleted = 0");
    const reference = db.prepare(
      `SELECT t.task_id AS taskId, t.title, snippet(ref, -1, '[', ']', '…', 12) AS snippet
       FROM ref JOIN tasks t ON t.id = ref.rowid WHERE ref MATCH ? AND t.user_id = ? AND t.deleted = 0
       ORDER BY ref.rank, t.task_id LIMIT ?`,
    );
    // `brav`, `repo` and `task` each start one term (searched as that term); `alp`, `alpha`, `a` several.
    for (const text of ["alp", "alpha", "a", "alpha notes", "task", "brav", "repo", "bravo report", "alphab ex"])
      for (const limit of [1, 5, 20, 50]) {
        const want = reference.all(q(text), "u1", limit);
        expect(want.length, text).toBeGreaterThan(0);
        const got = store
          .search("u1", q(text), limit)
          .map(({ taskId, title, snippet }) => ({ taskId, title, snippet }));
        expect(got, `${text} limit ${limit}`).toEqual(want);
        for (const h of got) expect(h.snippet, text).toMatch(/\[.+\]/);
      }
  });

  it("finds the same whether a prefix starts one term or several, in any script", () => {
    const group = facts("u1", "Group photo");
    const cafe = facts("u1", "Café crème");
    store.upsertTask(group, 1);
    store.upsertTask(cafe, 1);
    store.upsertTask(facts("u2", "Groceries"), 1);
    const ids = (text: string) => store.search("u1", q(text), 20).map((h) => h.taskId);
    expect(ids("gro")).toEqual([group.taskId]); // group, groceries: a prefix
    expect(ids("grou")).toEqual([group.taskId]); // group alone: the term
    expect(ids("groc")).toEqual([]); // only another user's term starts so
    expect(ids("phot")).toEqual([group.taskId]);
    expect(ids("CAF")).toEqual([cafe.taskId]);
    expect(ids("crem")).toEqual([cafe.taskId]);
    expect(ids("crème")).toEqual([cafe.taskId]);
    expect(store.search("u1", q("grou"), 20)[0]?.snippet).toBe("[Group] photo");
    // A term added later is found by the prefix that was one term's before.
    const grow = facts("u1", "Grow basil");
    store.upsertTask(grow, 2);
    expect(ids("grou")).toEqual([group.taskId]);
    expect(ids("gro").sort()).toEqual([group.taskId, grow.taskId].sort());
  });

  it("keeps the project and label filters", () => {
    const a = facts("u1", "Plan trip", { projectId: "p1", labelIds: ["l1"] });
    const b = facts("u1", "Plan party", { projectId: "p2", labelIds: ["l1"] });
    store.upsertTask(a, 1);
    store.upsertTask(b, 1);
    store.upsertTask(facts("u2", "Plan trip", { projectId: "p1", labelIds: ["l1"] }), 1);
    expect(store.search("u1", q("plan"), 20, { projectId: "p1" }).map((h) => h.taskId)).toEqual([a.taskId]);
    expect(store.search("u1", q("plan"), 20, { labelId: "l1" }).map((h) => h.taskId)).toEqual(
      [a.taskId, b.taskId].sort(),
    );
    expect(store.search("u1", q("plan"), 20, { projectId: "p2", labelId: "l1" }).map((h) => h.taskId)).toEqual([
      b.taskId,
    ]);
  });

  it("drops deleted tasks and purged users, and never gives a purged user's range to someone else", () => {
    const t = facts("u1", "Gone soon");
    store.upsertTask(t, 1);
    store.upsertTask(facts("u1", "Gone later"), 1);
    expect(store.deleteTask(t.taskId, "u1", 2, 2)).toBe("applied");
    expect(store.search("u1", q("gone"), 20).map((h) => h.title)).toEqual(["Gone later"]);
    const ownerOf = db.prepare("SELECT n FROM search_owners WHERE user_id = ?").pluck();
    const purged = ownerOf.get("u1") as number;
    store.purgeUser("u1", 3);
    expect(db.prepare("SELECT count(*) FROM task_search").pluck().get()).toBe(0);
    expect(ownerOf.get("u1")).toBeUndefined();
    store.upsertTask(facts("u9", "Gone again"), 4);
    expect(ownerOf.get("u9")).toBeGreaterThan(purged);
  });

  it("refuses a task row beyond the rowid range it was given", () => {
    store.upsertTask(facts("u1", "First"), 1);
    db.prepare(
      "INSERT INTO tasks (id, task_id, user_id, title, notes, status, version) VALUES (?, 'x', 'u1', '', '', 'open', 1)",
    ).run(0xffff_ffff);
    expect(() => store.upsertTask(facts("u1", "Too far"), 2)).toThrow(/does not fit the search index/);
  });

  it("ranks only the newest maxRankedMatches matches when more match, counting those the filter keeps", () => {
    const capped = new TaskSearch(db, { maxRankedMatches: 3 });
    // The oldest match is the best one (shortest), then longer and longer titles.
    const oldest = facts("u1", "Memo", { projectId: "p1" });
    const rest = [1, 2, 3, 4].map((k) => facts("u1", `Memo ${"words ".repeat(k)}`, { projectId: k % 2 ? "p1" : "p2" }));
    db.transaction(() => {
      for (const t of [oldest, ...rest]) store.upsertTask(t, 1);
      for (let i = 0; i < 10; i++) store.upsertTask(facts(`other-${i}`, "Memo"), 1); // newer, not the caller's
    })();
    expect(store.search("u1", q("memo"), 20).map((h) => h.taskId)).toEqual([oldest, ...rest].map((t) => t.taskId));
    // 5 match: the newest 3 are ranked (best first), the two oldest are left out.
    expect(capped.search("u1", q("memo"), 20).map((h) => h.taskId)).toEqual(rest.slice(1).map((t) => t.taskId));
    expect(capped.search("u1", q("memo"), 1).map((h) => h.taskId)).toEqual([rest[1]?.taskId]);
    // In p1, 3 match (oldest, rest[0], rest[2]): all of them are ranked.
    expect(capped.search("u1", q("memo"), 20, { projectId: "p1" }).map((h) => h.taskId)).toEqual(
      [oldest, rest[0], rest[2]].map((t) => t?.taskId),
    );
    expect(capped.search("u1", q("memo"), 20)[0]?.snippet).toMatch(/^\[Memo\] words/);
    expect(() => new TaskSearch(db, { maxRankedMatches: 0 })).toThrow(/positive integer/);
  });
});
