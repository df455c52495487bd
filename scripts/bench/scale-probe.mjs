// The scale rows of `npm run bench` measured in one process on the stores themselves, as CPU time
// per call (process.cpuUsage), with the two sizes alternated round by round so that the load of a
// shared machine falls on both alike: the tasks store's ListTasks query (first page of 50, as the
// service asks it), CompleteTask of a daily recurring task (the store's transaction with its
// outbox event), and analytics' SearchTasks (FTS5, one word matching a tenth of the user's tasks),
// for a user with `small` and with `large` tasks, and for a user with `small` tasks among 1,000
// users of 20 tasks each. Real SQLite files (WAL, synchronous=FULL) in a temp dir.
//   npx tsc -b && node scripts/bench/scale-probe.mjs [small] [large]      (default 1000 100000)
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { MIGRATIONS as ANALYTICS_MIGRATIONS, AnalyticsStore } from "../../services/analytics/dist/analytics-store.js";
import { ftsQuery } from "../../services/analytics/dist/search-query.js";
import { MIGRATIONS as TASKS_MIGRATIONS, TasksStore } from "../../services/tasks/dist/tasks-store.js";

const SMALL = Number(process.argv[2] ?? 1000);
const LARGE = Number(process.argv[3] ?? 100000);
const USERS = 1000;
const PER_USER = 20;
const WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
const dir = tempDir("scale-probe-");
const tasksDb = openDatabase(join(dir.path, "tasks.db"), TASKS_MIGRATIONS);
const analyticsDb = openDatabase(join(dir.path, "analytics.db"), ANALYTICS_MIGRATIONS);
const tasks = new TasksStore(tasksDb);
const analytics = new AnalyticsStore(analyticsDb);
const now = Date.now();
const DAY = 86_400_000;

/** `n` tasks of `userId` in its Inbox (the last `recurring` daily recurring, kept for CompleteTask), in both stores. */
function seed(userId, n, recurring = 0) {
  const ids = [];
  const projectId = tasks.projects.inbox(userId, now).id;
  const fill = (a, b) => {
    for (let i = a; i < b; i++) {
      const rec = i >= n - recurring;
      const title = `Task ${i} ${WORDS[i % WORDS.length]} ${rec ? "standup" : "report"}`;
      const id = randomUUID();
      tasks.create(
        userId,
        () => ({
          title,
          notes: "bench",
          dueTime: rec ? now + DAY : null,
          timeZone: "",
          recurrenceRule: rec ? "FREQ=DAILY" : "",
          reminderOffsets: [],
          parentTaskId: null,
          priority: 4,
          projectId,
          labelIds: [],
          parentId: null,
          assigneeId: null,
        }),
        { id, now, maxTasks: 1e9 },
      );
      analytics.upsertTask(
        {
          taskId: id,
          userId,
          title,
          notes: "bench",
          status: "open",
          dueMs: rec ? now + DAY : undefined,
          completedMs: undefined,
          version: 1,
          priority: 4,
          projectId,
        },
        now,
      );
      if (rec) ids.push(id);
    }
  };
  for (let i = 0; i < n; i += 5000)
    analyticsDb.transaction(() => tasksDb.transaction(() => fill(i, Math.min(n, i + 5000)))())();
  return { userId, recurring: ids };
}

const t0 = Date.now();
const COMPLETABLE = 400; // 7 rounds of 40 and the warm-up
const small = seed(randomUUID(), SMALL, COMPLETABLE);
const large = seed(randomUUID(), LARGE, COMPLETABLE);
analyticsDb.transaction(() =>
  tasksDb.transaction(() => {
    for (let u = 0; u < USERS; u++) seed(randomUUID(), PER_USER);
  })(),
)();
const crowd = seed(randomUUID(), SMALL, COMPLETABLE);
console.log(`seeded ${SMALL + LARGE + USERS * PER_USER + SMALL} tasks in ${Math.round((Date.now() - t0) / 1000)} s`);

const listQuery = (userId) => ({
  userId,
  status: null,
  priority: null,
  dueAfterMs: null,
  dueBeforeMs: null,
  projectId: null,
  labelId: null,
  hideArchived: true,
  order: "due",
  after: null,
  limit: 51,
});
const ops = {
  ListTasks: (u) => tasks.list(listQuery(u.userId)),
  SearchTasks: (u, i) => analytics.search(u.userId, ftsQuery(WORDS[i % WORDS.length]), 20),
  "CompleteTask (recurring)": (u) => tasks.complete(u.userId, u.recurring.pop(), Date.now()),
};
/** CPU µs per call of `fn` over `n` calls. */
const cpuPerCall = (fn, u, n) => {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(u, i);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const ROUNDS = 7;
for (const [name, fn] of Object.entries(ops)) {
  const n = name === "ListTasks" ? 200 : name === "SearchTasks" ? 20 : 40;
  const r = { small: [], large: [], crowd: [] };
  for (const u of [small, large, crowd]) fn(u, 0); // warm-up
  for (let k = 0; k < ROUNDS; k++) {
    r.small.push(cpuPerCall(fn, small, n));
    r.large.push(cpuPerCall(fn, large, n));
    r.crowd.push(cpuPerCall(fn, crowd, n));
  }
  const [s, l, c] = [median(r.small), median(r.large), median(r.crowd)];
  console.log(
    `${name}: ${SMALL} tasks ${(s / 1000).toFixed(3)} ms CPU/call, ${LARGE} tasks ${(l / 1000).toFixed(3)} ms (${(l / s).toFixed(2)}×), ${SMALL} tasks among ${USERS} users ${(c / 1000).toFixed(3)} ms (${(c / s).toFixed(2)}×); median of ${ROUNDS} alternating rounds of ${n}`,
  );
}
tasksDb.close();
analyticsDb.close();
dir.remove();
