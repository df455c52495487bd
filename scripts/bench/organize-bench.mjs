// Projects' manual order (issue 14), measured on the tasks store itself (real SQLite, temp file):
// - MoveTask's cost in a project of 100 tasks and of 5,000 (one row written either way: the
//   ratio should stay near 1), per move, with the move's task.updated appended to the outbox;
// - rank length after moves that always land in the same gap (fractional-indexing's worst case;
//   the store renumbers the siblings past MAX_RANK_LENGTH);
// - ListTasks' first page (50) in manual order with a label filter, against the due order;
// - ListTasks' first page without project_id (the sharing access clause), against a project's.
// `npx tsc -b && node scripts/bench/organize-bench.mjs`
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { MIGRATIONS, TasksStore } from "../../services/tasks/dist/tasks-store.js";

const dir = tempDir("organize-bench-");
const db = openDatabase(join(dir.path, "tasks.db"), MIGRATIONS);
const store = new TasksStore(db);
const user = randomUUID();
let now = Date.UTC(2030, 0, 1);
const label = store.labels.create(user, "bench", now, 10);

function fill(projectName, n) {
  const p = store.projects.create(user, projectName, now, 100);
  const ids = [];
  for (let i = 0; i < n; i++) {
    const r = store.create(
      user,
      () => ({
        title: `task ${i}`,
        notes: "",
        dueTime: now + (i % 97) * 60_000,
        timeZone: "",
        recurrenceRule: "",
        reminderOffsets: [],
        parentTaskId: null,
        priority: 4,
        projectId: p.id,
        labelIds: i % 3 === 0 ? [label.id] : [],
        parentId: null,
        assigneeId: null,
      }),
      { id: randomUUID(), now: ++now, maxTasks: 1_000_000 },
    );
    ids.push(r.task.id);
  }
  return { project: p, ids };
}

function timeMoves(ids, moves) {
  let seed = 7;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % ids.length;
  };
  const t0 = performance.now();
  for (let i = 0; i < moves; i++) {
    const a = ids[rnd()];
    let b = ids[rnd()];
    if (a === b) b = ids[(ids.indexOf(a) + 1) % ids.length];
    store.move(user, a, i % 2 ? { after: b } : { before: b }, ++now);
  }
  return ((performance.now() - t0) * 1000) / moves;
}

const small = fill("small", 100);
const large = fill("large", 5000);
const MOVES = 500;
timeMoves(small.ids, 50); // warm-up
const usSmall = timeMoves(small.ids, MOVES);
const usLarge = timeMoves(large.ids, MOVES);
console.log(
  `MoveTask: ${usSmall.toFixed(0)} µs/move in a project of 100, ${usLarge.toFixed(0)} µs/move in one of 5,000 (ratio ${(usLarge / usSmall).toFixed(2)}), ${MOVES} moves each`,
);

// Worst case for key length: every move lands in the same gap (between the first two tasks).
const [first, second] = store
  .list({
    userId: user,
    status: null,
    priority: null,
    dueAfterMs: null,
    dueBeforeMs: null,
    projectId: small.project.id,
    labelId: null,
    hideArchived: true,
    order: "manual",
    after: null,
    limit: 2,
  })
  .map((r) => r.task.id);
let moved = small.ids.find((id) => id !== first && id !== second);
for (let i = 0; i < 1000; i++) {
  store.move(user, moved, { after: first }, ++now);
  moved = small.ids[(small.ids.indexOf(moved) + 1) % small.ids.length];
  if (moved === first) moved = small.ids[(small.ids.indexOf(moved) + 1) % small.ids.length];
}
const lengths = store
  .list({
    userId: user,
    status: null,
    priority: null,
    dueAfterMs: null,
    dueBeforeMs: null,
    projectId: small.project.id,
    labelId: null,
    hideArchived: true,
    order: "manual",
    after: null,
    limit: 200,
  })
  .map((r) => r.task.rank.length);
console.log(
  `rank length after 1,000 moves into the same gap (renumbered past 48): max ${Math.max(...lengths)} characters, mean ${(lengths.reduce((a, b) => a + b, 0) / lengths.length).toFixed(1)}`,
);

function timeList(order, labelId, rounds = 300, projectId = large.project.id) {
  const q = {
    userId: user,
    status: "open",
    priority: null,
    dueAfterMs: null,
    dueBeforeMs: null,
    projectId,
    labelId,
    hideArchived: true,
    order,
    after: null,
    limit: 51,
  };
  store.list(q);
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) store.list(q);
  return ((performance.now() - t0) * 1000) / rounds;
}
const due = timeList("due", null);
const manual = timeList("manual", null);
const manualLabel = timeList("manual", label.id);
console.log(
  `ListTasks first page of 50 in a project of 5,000: due order ${due.toFixed(0)} µs, manual order ${manual.toFixed(0)} µs (${(manual / due).toFixed(2)}×), manual + label filter ${manualLabel.toFixed(0)} µs (${(manualLabel / due).toFixed(2)}×)`,
);
// Sharing: without project_id ListTasks keeps the caller's own tasks in projects they still have
// a role in (own projects UNION memberships); with 20 memberships in others' projects.
for (let i = 0; i < 20; i++) {
  const other = randomUUID();
  const p = store.projects.create(other, `shared ${i}`, now, 100);
  const inv = store.sharing.invite(p, `bench${i}@example.test`, "editor", "", now);
  store.sharing.accept(inv, p, user, now);
}
const allTasks = timeList("due", null, 300, null);
// The same page's ids under the clause ListTasks had before sharing and under today's (same columns).
function timeIds(sql) {
  const stmt = db.prepare(`SELECT id FROM tasks WHERE user_id = @u AND status = 'open' AND ${sql}
    ORDER BY due_sort, id LIMIT 51`);
  stmt.all({ u: user });
  const t0 = performance.now();
  for (let i = 0; i < 300; i++) stmt.all({ u: user });
  return ((performance.now() - t0) * 1000) / 300;
}
const oldClause = timeIds("project_id NOT IN (SELECT id FROM projects WHERE user_id = @u AND archived = 1)");
const newClause = timeIds(`project_id IN (SELECT id FROM projects WHERE user_id = @u AND archived = 0
  UNION SELECT m.project_id FROM project_members m JOIN projects p ON p.id = m.project_id
  WHERE m.user_id = @u AND p.archived = 0)`);
console.log(
  `ListTasks first page of 50 without project_id (${small.ids.length + large.ids.length} own tasks, 20 shared memberships): ${allTasks.toFixed(0)} µs through the store; its WHERE alone: before sharing ${oldClause.toFixed(0)} µs, with the membership clause ${newClause.toFixed(0)} µs (${(newClause / oldClause).toFixed(2)}×)`,
);
db.close();
dir.remove();
