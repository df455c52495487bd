// Splits task.created → analytics visible into its stages, per event, from what the services
// record anyway: the task's create_time (tasks, before its transaction), the outbox row's
// created_at (append, in that transaction) and published_at (marked after the PubAck), the
// JetStream message's stored time (the server's receive time, i.e. the publish), analytics'
// inbox processed_at (the consumer starting the apply transaction, after delivery and decode),
// and the time the bench saw the read-model row (after the commit). All on one machine's clock;
// the services' ISO times have ms resolution.
import { fromBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import Database from "better-sqlite3";
import { connect as natsConnect } from "nats";

const pct = (xs, p) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] * 100) / 100;
};
const stat = (xs) => ({ p50: pct(xs, 50), p99: pct(xs, 99), max: pct(xs, 100) });

/**
 * `created`: task id → create_time (epoch ms); `visible`: task id → seen in analytics (epoch ms).
 * Returns { stages: { name: { p50, p99, max } }, slowest: the stages of the p99-and-worse events }.
 */
export async function eventStages({
  tasksDbPath,
  analytics,
  natsUrl,
  created,
  visible,
  consumerPrefix = "analytics-",
}) {
  const tasks = new Database(tasksDbPath, { readonly: true });
  tasks.pragma("busy_timeout = 5000");
  const first = new Date(Math.min(...created.values()) - 1000).toISOString();
  const rows = tasks
    .prepare(
      "SELECT event_id, data, created_at, published_at, stream_seq FROM outbox WHERE subject = 'taskmesh.task.created' AND created_at >= ?",
    )
    .all(first);
  tasks.close();
  const inbox = analytics.prepare("SELECT processed_at FROM inbox WHERE event_id = ? AND consumer LIKE ?").pluck();
  const nc = await natsConnect({ servers: natsUrl });
  const jsm = await nc.jetstreamManager();
  const per = [];
  try {
    for (const r of rows) {
      const env = fromBinary(EnvelopeSchema, r.data);
      const c = created.get(env.aggregateId);
      const v = visible.get(env.aggregateId);
      if (c === undefined || v === undefined || !r.published_at) continue;
      const applied = inbox.get(r.event_id, `${consumerPrefix}%`);
      const stored = r.stream_seq ? (await jsm.streams.getMessage("TASKS", { seq: r.stream_seq })).time.getTime() : NaN;
      const appended = Date.parse(r.created_at);
      const marked = Date.parse(r.published_at);
      const start = applied ? Date.parse(applied) : NaN;
      per.push({
        total: v - c,
        "create→append": appended - c,
        "append→stored (relay wake + publish)": stored - appended,
        "stored→marked (PubAck + mark)": marked - stored,
        "stored→apply start (delivery)": start - stored,
        "apply start→visible (apply + commit)": v - start,
      });
    }
  } finally {
    await nc.close();
  }
  const names = Object.keys(per[0] ?? {});
  const stages = Object.fromEntries(names.map((n) => [n, stat(per.map((p) => p[n]).filter(Number.isFinite))]));
  // Where the tail sits: each stage's median over the slowest 1 % of events.
  const cut = pct(
    per.map((p) => p.total),
    99,
  );
  const tail = per.filter((p) => p.total >= cut);
  const slowest = Object.fromEntries(names.map((n) => [n, pct(tail.map((p) => p[n]).filter(Number.isFinite), 50)]));
  return { events: per.length, stages, slowest };
}
