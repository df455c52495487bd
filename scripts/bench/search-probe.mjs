// SearchTasks in the analytics store itself, with the bench's data shape: one user with 100k
// tasks titled `Task ${i} ${WORD} report` (10 words, so a word matches 10k of them), a user with
// 1k such tasks, and 1,000 users with 20 each (122k rows), folded like the service folds events
// (64 per transaction, so FTS5 holds the segments its automerge leaves). Prints wall-clock
// p50/p99 per call for the big and the small user, for a word (`alpha`, sent as the prefix
// `"alpha"*` like every word) and a short prefix (`alp`).
// With --base <tree> the same rows are also folded by that tree's built store (another checkout,
// e.g. main) into a second database, and the two are called alternately, so a shared machine's
// load falls on both alike.
//   npx tsc -b && node scripts/bench/search-probe.mjs [--base ../wt-main] [--calls 300] [--dir /tmp/search-probe]
import { randomUUID } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { openDatabase } from "@taskmesh/platform";

const { values: args } = parseArgs({
  options: {
    base: { type: "string" },
    calls: { type: "string", default: "300" },
    dir: { type: "string", default: "/tmp/search-probe" },
  },
});
const CALLS = Number(args.calls);
const WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
const here = resolve(import.meta.dirname, "../..");
const trees = { new: here, ...(args.base ? { base: resolve(args.base) } : {}) };

// The same rows for every tree, in fresh databases (removed at the end).
rmSync(args.dir, { recursive: true, force: true });
mkdirSync(args.dir, { recursive: true });
// UUIDs for users, tasks and projects, as the service stores them (row sizes decide how much of
// the tables SQLite's page cache holds).
const [BIG, SMALL] = [randomUUID(), randomUUID()];
const projects = new Map();
const rows = [
  ...Array.from({ length: 100_000 }, (_, i) => [BIG, i]),
  ...Array.from({ length: 1_000 }, (_, i) => [SMALL, i]),
  ...Array.from({ length: 1000 }, () => randomUUID()).flatMap((u) => Array.from({ length: 20 }, (_, i) => [u, i])),
].map(([userId, i]) => {
  if (!projects.has(userId)) projects.set(userId, randomUUID());
  return { userId, i, taskId: randomUUID(), projectId: projects.get(userId) };
});

async function open(name, tree) {
  const { MIGRATIONS, AnalyticsStore } = await import(join(tree, "services/analytics/dist/analytics-store.js"));
  const { ftsQuery } = await import(join(tree, "services/analytics/dist/search-query.js"));
  const path = join(args.dir, `${name}.db`);
  const db = openDatabase(path, MIGRATIONS);
  const store = new AnalyticsStore(db);
  {
    const t0 = Date.now();
    db.pragma("synchronous = OFF"); // only to seed faster; the index's shape is the same
    const fold = db.transaction((batch) => {
      for (const { userId, i, taskId, projectId } of batch) {
        const title = `Task ${i} ${WORDS[i % WORDS.length]} report`;
        const facts = {
          taskId,
          userId,
          title,
          notes: "bench",
          status: "open",
          version: 1,
          priority: 4,
          projectId,
        };
        store.upsertTask({ ...facts, dueMs: undefined, completedMs: undefined }, 1);
      }
    });
    for (let k = 0; k < rows.length; k += 64) fold(rows.slice(k, k + 64));
    db.pragma("synchronous = FULL");
    console.log(`${name}: folded ${rows.length} tasks in ${Date.now() - t0} ms`);
  }
  return { db, search: (user, text) => store.search(user, ftsQuery(text), 20) };
}

const stores = {};
for (const [name, tree] of Object.entries(trees)) stores[name] = await open(name, tree);
const cases = { word: (w) => w, prefix: (w) => w.slice(0, 3) };
const users = { big: BIG, small: SMALL };
const times = {};
for (const name of Object.keys(stores))
  for (const c of Object.keys(cases)) for (const u of Object.keys(users)) times[`${name} ${u}/${c}`] = [];
for (const name of Object.keys(stores)) stores[name].search(BIG, "alpha"); // warm-up
for (let i = 0; i < CALLS; i++)
  for (const [c, text] of Object.entries(cases))
    for (const [u, user] of Object.entries(users))
      for (const [name, s] of Object.entries(stores)) {
        const t0 = process.hrtime.bigint();
        s.search(user, text(WORDS[i % WORDS.length]));
        times[`${name} ${u}/${c}`].push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
console.log(
  `${CALLS} calls each, alternating; ms p50/p99; load ${(await import("node:os"))
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}`,
);
for (const [key, xs] of Object.entries(times)) {
  xs.sort((a, b) => a - b);
  console.log(`${key.padEnd(20)} ${pct(xs, 50).toFixed(2).padStart(7)} ${pct(xs, 99).toFixed(2).padStart(7)}`);
}
for (const s of Object.values(stores)) s.db.close();
rmSync(args.dir, { recursive: true, force: true });
