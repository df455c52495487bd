// The event pipeline after the commit, without the gateway and gRPC in front of it: in one
// process, the tasks store's own CreateTask transaction (synchronous=FULL, its outbox row) at a
// fixed rate, tasks' OutboxRelay to a nats-server, and analytics' EventConsumer folding
// task.created into the real analytics store. Latency = the read model's commit (the consumer's
// afterCommit hook) − the moment before the create's transaction, with stages: the producer's
// commit (its fsync), its end → the relay's PubAck (afterPubAck hook: wake, publish, store),
// → the consumer's apply (beforeCommit hook: delivery), → the read model's commit. Each rate runs three times in the same run:
// one transaction per event (maxBatch 1, prefetch 10: the consumer as it was), batched (the
// defaults), and batched with syncBeforeAck (as analytics runs it: commit, then fsync, then ack).
//
//   node scripts/bench/pipeline-bench.mjs [--rates 100,500,1000] [--duration 3000]
import { randomUUID } from "node:crypto";
import { loadavg } from "node:os";
import { join } from "node:path";
import { createHistogram, performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { TaskCreatedSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { TaskSchema } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import {
  appendEvent,
  createLogger,
  EventConsumer,
  NatsLink,
  newEvent,
  OutboxRelay,
  openDatabase,
  STREAMS,
} from "@taskmesh/platform";
import { startNats, tempDir } from "@taskmesh/platform/testing";
import { MIGRATIONS as ANALYTICS_MIGRATIONS, AnalyticsStore } from "../../services/analytics/dist/analytics-store.js";
import { foldHandler } from "../../services/analytics/dist/events.js";
import { MIGRATIONS as TASK_MIGRATIONS } from "../../services/tasks/dist/tasks-store.js";
import { summary } from "./measure.mjs";

const logger = createLogger("bench", { level: "silent" });

/** One pipeline (fresh databases, durable and link) at `rate` events/s for `durationMs`. */
async function runOnce(dir, tag, rate, durationMs, consumerOpts) {
  // A server of its own: a new durable would otherwise start with the last run's messages.
  const nats = await startNats();
  try {
    return await measure(dir, nats.url, tag, rate, durationMs, consumerOpts);
  } finally {
    await nats.stop();
  }
}

async function measure(dir, natsUrl, tag, rate, durationMs, consumerOpts) {
  const tasksDb = openDatabase(join(dir, `tasks-${tag}.db`), TASK_MIGRATIONS);
  const analyticsDb = openDatabase(join(dir, `analytics-${tag}.db`), ANALYTICS_MIGRATIONS);
  const store = new AnalyticsStore(analyticsDb);
  const link = new NatsLink({ servers: natsUrl, name: `pipeline-${tag}`, logger });
  const t = { start: new Map(), committed: new Map(), acked: new Map(), delivered: new Map(), applied: new Map() };
  const now = () => performance.now();
  const relay = new OutboxRelay({
    db: tasksDb,
    link,
    logger,
    streams: [STREAMS.TASKS],
    hooks: { afterPubAck: (row) => t.acked.set(row.eventId, now()) },
  });
  const consumer = new EventConsumer({
    link,
    db: analyticsDb,
    logger,
    stream: STREAMS.TASKS,
    consumer: { durable: `pipeline-${tag}` },
    handler: foldHandler(store, logger),
    hooks: {
      beforeCommit: (e) => t.delivered.set(e.id, now()),
      afterCommit: (e) => t.applied.set(e.id, now()),
    },
    ...consumerOpts,
  });
  relay.start();
  consumer.start();
  const userId = randomUUID();
  // The producer's commit: the outbox row in a synchronous=FULL transaction, as CreateTask's.
  const createTask = tasksDb.transaction((event) => appendEvent(tasksDb, event));
  // Warm-up: the streams and the durable exist, JIT has seen the path.
  for (let i = 0; i < 20; i++) createTask(newTaskEvent(userId, i));
  await waitUntil(() => t.applied.size >= 20, 30_000);
  await new Promise((r) => setTimeout(r, 200));
  for (const m of Object.values(t)) m.clear();
  const total = Math.round((rate * durationMs) / 1000);
  const t0 = now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const event = newTaskEvent(userId, i);
    t.start.set(event.id, now());
    createTask(event);
    t.committed.set(event.id, now());
  }
  const sentRate = Math.round(total / ((now() - t0) / 1000));
  const ids = [...t.start.keys()];
  await waitUntil(() => ids.every((id) => t.applied.has(id)), 60_000);
  await consumer.stop();
  await relay.stop();
  await link.close();
  tasksDb.close();
  analyticsDb.close();
  const hist = () => createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
  const h = {
    total: hist(),
    producerCommit: hist(),
    relayToPubAck: hist(),
    pubAckToDelivery: hist(),
    deliveryToCommit: hist(),
  };
  const rec = (hh, a, b) => {
    if (a !== undefined && b !== undefined) hh.record(Math.max(1, Math.round((b - a) * 1e6)));
  };
  for (const [id, s] of t.start) {
    rec(h.total, s, t.applied.get(id));
    rec(h.producerCommit, s, t.committed.get(id));
    rec(h.relayToPubAck, t.committed.get(id), t.acked.get(id));
    rec(h.pubAckToDelivery, t.acked.get(id), t.delivered.get(id));
    rec(h.deliveryToCommit, t.delivered.get(id), t.applied.get(id));
  }
  return {
    sentRate,
    applied: t.applied.size,
    ...Object.fromEntries(Object.entries(h).map(([k, v]) => [k, summary(v)])),
  };
}

function newTaskEvent(userId, i) {
  const id = randomUUID();
  const task = create(TaskSchema, { id, userId, title: `Task ${i} pipeline report`, notes: "bench", version: 1n });
  return newEvent({
    userId,
    aggregateId: id,
    payload: { case: "taskCreated", value: create(TaskCreatedSchema, { task }) },
  });
}

async function waitUntil(cond, ms) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("pipeline bench: events not applied in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The disk's floor: `n` one-row commits with synchronous=FULL (one fsync each, as CreateTask's)
 * and with NORMAL (none), on this machine's temp dir, in ms.
 */
export function commitFloor(dir, n = 300) {
  const db = openDatabase(join(dir, "floor.db"), [
    { version: 1, name: "t", sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)" },
  ]);
  const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
  const run = (level) => {
    db.pragma(`synchronous = ${level}`);
    const h = createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      insert.run("x".repeat(200));
      h.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
    }
    return summary(h);
  };
  const out = { full: run("FULL"), normal: run("NORMAL") };
  db.close();
  return out;
}

/** Runs every rate with each consumer mode; returns the figures by rate and mode. */
export async function pipelineBench({ rates = [100, 500], durationMs = 3000 } = {}) {
  const dir = tempDir("taskmesh-pipeline-");
  const out = [];
  try {
    let n = 0;
    for (const rate of rates) {
      const perEvent = await runOnce(dir.path, `${++n}`, rate, durationMs, { maxBatch: 1, prefetch: 10 });
      const batched = await runOnce(dir.path, `${++n}`, rate, durationMs, {});
      const syncBeforeAck = await runOnce(dir.path, `${++n}`, rate, durationMs, { syncBeforeAck: true });
      out.push({ rate, perEvent, batched, syncBeforeAck });
    }
  } finally {
    dir.remove();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { rates: { type: "string" }, duration: { type: "string" } } });
  const floorDir = tempDir("taskmesh-floor-");
  const floor = commitFloor(floorDir.path);
  floorDir.remove();
  console.log(
    `commit floor (ms p50/p99/p999): synchronous=FULL ${floor.full.p50}/${floor.full.p99}/${floor.full.p999}, NORMAL ${floor.normal.p50}/${floor.normal.p99}/${floor.normal.p999}; load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  const res = await pipelineBench({
    rates: (values.rates ?? "100,500,1000").split(",").map(Number),
    durationMs: Number(values.duration ?? 3000),
  });
  const stages = ["total", "producerCommit", "relayToPubAck", "pubAckToDelivery", "deliveryToCommit"];
  console.log(`rate  mode           sent/s  (ms)${stages.map((k) => `${k} p50/p99/p999`.padStart(28)).join("")}`);
  for (const r of res)
    for (const mode of ["perEvent", "batched", "syncBeforeAck"]) {
      const m = r[mode];
      const cells = stages.map((k) => `${m[k].p50}/${m[k].p99}/${m[k].p999}`.padStart(28));
      console.log(`${String(r.rate).padEnd(6)}${mode.padEnd(15)}${String(m.sentRate).padStart(6)}  ${cells.join("")}`);
    }
  console.log(
    `load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
}
