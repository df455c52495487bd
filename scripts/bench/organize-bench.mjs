// Projects' manual order (issue 14), measured on the tasks store itself (real SQLite, temp file):
// - MoveTask's cost in a project of 100 tasks and of 5,000 (one row written either way: the
//   ratio should stay near 1), per move, with the move's task.updated appended to the outbox;
// - rank length after moves that always land in the same gap (fractional-indexing's worst case;
//   the store renumbers the siblings past MAX_RANK_LENGTH);
// - ListTasks' first page (50) in manual order with a label filter, against the due order.
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

function timeList(order, labelId, rounds = 300) {
  const q = {
    userId: user,
    status: "open",
    priority: null,
    dueAfterMs: null,
    dueBeforeMs: null,
    projectId: large.project.id,
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
db.close();
dir.remove();
