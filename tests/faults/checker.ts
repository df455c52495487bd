// The delivery checker of the fault suite: for a set of tasks it counts the events the producer
// stored in JetStream against the effects observed in every consumer, and names each task with an
// event lost or an effect doubled.
//
// Produced: the TASKS stream read from its first to its last sequence (direct gets, nothing
// consumed). JetStream already drops a republished event with the same Nats-Msg-Id (= event id),
// so an event id stored twice, or two events for the same task transition, is a double at the source.
//
// Observed, for each produced event and each durable consumer of TASKS whose filter matches it:
//   - applied at all: the event id is in that consumer's inbox (platform table `inbox`, read
//     read-only from `<dataDir>/<service>.db`; the service is the durable's first word);
//   - its effect, through the services' own APIs:
//       analytics  SearchTasks (via the gateway): the task is there once, completed iff it is;
//                  GetStats: created/completed counts equal the tasks the stream says exist;
//       reminders  ListSchedule (internal, service token): an open task with a due time in the
//                  future has its due timer + one per reminder offset, a finished one none;
//       recurrence tasks' ListTasks (via the gateway): a completed recurring task has exactly
//                  one occurrence (parent_task_id = it).
// Versions: tasks bumps a task's version on every change and publishes each change, so versions
// 1..current must all be in the stream (a gap is an event lost in the outbox or the relay).

import { existsSync } from "node:fs";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { ReminderInternalService } from "@taskmesh/gen/taskmesh/reminders/v1/reminders_pb";
import { type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { createGrpcClient, ServiceTokens } from "@taskmesh/platform";
import Database from "better-sqlite3";
import { connect, type JetStreamManager } from "nats";

// ---------------------------------------------------------------------------------------------
// What was produced

/** One message of the stream, decoded. */
export interface StoredEvent {
  streamSeq: number;
  subject: string;
  /** The Nats-Msg-Id header JetStream de-duplicated on. */
  msgId: string;
  eventId: string;
  type: string;
  userId: string;
  taskId: string;
  /** Task version the event carries (task.deleted: its `version`). */
  version: number;
  /** The task as of the event (absent on task.deleted). */
  task?: Task;
}

/** A durable consumer of the stream, as JetStream knows it. */
export interface ConsumerView {
  durable: string;
  /** Subject filter; "" for the whole stream. */
  filter: string;
  /** Messages not yet delivered + delivered but not acknowledged. */
  inFlight: number;
}

export interface Produced {
  /** The stream's last sequence when it was read. */
  lastSeq: number;
  events: StoredEvent[];
  /** Stream sequences whose data is not an Envelope (poison; not tied to any task). */
  undecodable: number[];
  consumers: ConsumerView[];
}

/** Reads every message of `stream` (direct gets: nothing is consumed or acknowledged) and its consumers. */
export async function readProduced(jsm: JetStreamManager, stream = "TASKS"): Promise<Produced> {
  const info = await jsm.streams.info(stream);
  const events: StoredEvent[] = [];
  const undecodable: number[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    let msg: Awaited<ReturnType<JetStreamManager["streams"]["getMessage"]>>;
    try {
      msg = await jsm.streams.getMessage(stream, { seq });
    } catch {
      continue; // a deleted sequence
    }
    let env: Envelope;
    try {
      env = fromBinary(EnvelopeSchema, msg.data);
      if (!env.id) throw new Error("no id");
    } catch {
      undecodable.push(seq);
      continue;
    }
    const p = env.payload;
    const task =
      p.case === "taskCreated" || p.case === "taskUpdated" || p.case === "taskCompleted" ? p.value.task : undefined;
    const version = p.case === "taskDeleted" ? Number(p.value.version) : Number(task?.version ?? 0);
    events.push({
      streamSeq: seq,
      subject: msg.subject,
      msgId: msg.header?.get("Nats-Msg-Id") ?? "",
      eventId: env.id,
      type: env.type,
      userId: env.userId,
      taskId: env.aggregateId,
      version,
      ...(task ? { task } : {}),
    });
  }
  const consumers: ConsumerView[] = [];
  for (const c of await jsm.consumers.list(stream).next()) {
    consumers.push({
      durable: c.config.durable_name ?? c.name,
      filter: c.config.filter_subject ?? "",
      inFlight: c.num_pending + c.num_ack_pending,
    });
  }
  return { lastSeq: info.state.last_seq, events, undecodable, consumers };
}

// ---------------------------------------------------------------------------------------------
// What was observed

export interface Observed {
  /** Event ids each consumer recorded in its inbox; a consumer missing here could not be read. */
  inbox: Map<string, Set<string>>;
  /** Why a consumer's inbox could not be read (no database file for it, say). */
  inboxUnreadable: Map<string, string>;
  /** The tasks service's current tasks (every status) of the users checked. */
  tasks: Map<string, Task>;
  /** analytics SearchTasks: hits per task id, and whether it shows the task completed. */
  search: Map<string, { hits: number; completed: boolean }>;
  /** analytics GetStats per user. */
  stats: Map<string, { created: number; completed: number }>;
  /** reminders ListSchedule: pending timers per task id. */
  timers: Map<string, number>;
}

/** A user whose tasks are checked, and the token to read them through the gateway. */
export interface CheckedUser {
  userId: string;
  token: string;
}

export interface ObserveOptions {
  /** Where the services keep `<service>.db`. */
  dataDir: string;
  /** The gateway, e.g. http://127.0.0.1:8080. */
  gateway: string;
  /** host:port of reminders' gRPC server (its internal ListSchedule). */
  remindersAddr: string;
  /** The runner's serviceSecret, to sign a service token for ListSchedule. */
  serviceSecret: string;
  users: readonly CheckedUser[];
}

/** Reads each consumer's inbox (read-only) and each service's view of the users' tasks. */
export async function observe(
  opts: ObserveOptions,
  consumers: readonly ConsumerView[],
  /** SearchTasks queries per user id (their hits are counted per task id). */
  queries: ReadonlyMap<string, ReadonlySet<string>>,
): Promise<Observed> {
  const inbox = new Map<string, Set<string>>();
  const inboxUnreadable = new Map<string, string>();
  for (const c of consumers) {
    const service = c.durable.split("-")[0] ?? c.durable;
    const file = join(opts.dataDir, `${service}.db`);
    if (!existsSync(file)) {
      inboxUnreadable.set(c.durable, `no database ${file}`);
      continue;
    }
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const ids = db.prepare("SELECT event_id FROM inbox WHERE consumer = ?").pluck().all(c.durable) as string[];
      inbox.set(c.durable, new Set(ids));
    } catch (err) {
      inboxUnreadable.set(c.durable, err instanceof Error ? err.message : String(err));
    } finally {
      db.close();
    }
  }

  const transport: Transport = createGrpcTransport({ baseUrl: opts.gateway });
  const taskClient = createClient(TaskService, transport);
  const analytics = createClient(AnalyticsService, transport);
  const reminders = createGrpcClient(ReminderInternalService, {
    address: opts.remindersAddr,
    defaultTimeoutMs: 5000,
    retries: true,
    metadata: async () => ({ authorization: `Bearer ${await checkerTokens(opts.serviceSecret).token()}` }),
  });
  const tasks = new Map<string, Task>();
  const search = new Map<string, { hits: number; completed: boolean }>();
  const stats = new Map<string, { created: number; completed: number }>();
  const timers = new Map<string, number>();
  try {
    for (const u of opts.users) {
      const call = { headers: { authorization: `Bearer ${u.token}` }, timeoutMs: 10_000 };
      let pageToken = "";
      do {
        const page = await taskClient.listTasks({ pageSize: 100, pageToken }, call);
        for (const t of page.tasks) tasks.set(t.id, t);
        pageToken = page.nextPageToken;
      } while (pageToken);

      const s = (await analytics.getStats({}, call)).stats;
      stats.set(u.userId, { created: Number(s?.createdCount ?? 0), completed: Number(s?.completedCount ?? 0) });

      for (const q of queries.get(u.userId) ?? []) {
        const res = await analytics.searchTasks({ query: q, limit: 50 }, call);
        const seen = new Map<string, { hits: number; completed: boolean }>();
        for (const h of res.hits) {
          const prev = seen.get(h.taskId);
          seen.set(h.taskId, { hits: (prev?.hits ?? 0) + 1, completed: h.completed });
        }
        for (const [id, v] of seen) search.set(id, v);
      }

      const schedule = await reminders.listSchedule({ userId: u.userId });
      for (const t of schedule.timers) timers.set(t.taskId, (timers.get(t.taskId) ?? 0) + 1);
    }
  } finally {
    reminders.close();
  }
  return { inbox, inboxUnreadable, tasks, search, stats, timers };
}

let tokens: { secret: string; tokens: ServiceTokens } | undefined;
function checkerTokens(secret: string): ServiceTokens {
  if (tokens?.secret !== secret) tokens = { secret, tokens: new ServiceTokens(secret, "faults-checker") };
  return tokens.tokens;
}

// ---------------------------------------------------------------------------------------------
// Produced against observed

export interface TaskVerdict {
  /** Events that never reached the stream or a consumer, and effects missing. Empty when fine. */
  lost: string[];
  /** Events stored twice and effects applied twice. Empty when fine. */
  doubled: string[];
}

export interface Report {
  /** Per checked task id, plus `user:<id>` for per-user counters (analytics stats). */
  verdicts: Map<string, TaskVerdict>;
  /** Consumers with messages not yet delivered or acknowledged (the check is not final while any). */
  unsettled: string[];
  /** The durable consumers of the stream that were checked. */
  consumers: string[];
  /**
   * True when the findings are final: no consumer had anything in flight and (set by checkDelivery)
   * the stream did not change while the consumers were observed. Otherwise a finding may only be
   * the skew between reading the stream and reading the consumers.
   */
  stable: boolean;
  lostCount: number;
  doubledCount: number;
}

export interface AssessOptions {
  /** The tasks checked. Occurrences created by recurrence for them are checked too. */
  taskIds: readonly string[];
  /** Users whose analytics counters are checked (every task of theirs must be in the stream). */
  userIds: readonly string[];
  /** "Now", for which timers are still pending. Default Date.now(). */
  nowMs?: number;
}

function subjectMatches(filter: string, subject: string): boolean {
  if (filter === "") return true;
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length || (f[i] !== "*" && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

/**
 * Compares what the stream holds with what the consumers show, task by task. Pure: everything it
 * looks at is in `produced` and `observed`, so a unit test can plant a loss or a double.
 */
export function assess(produced: Produced, observed: Observed, opts: AssessOptions): Report {
  const nowMs = opts.nowMs ?? Date.now();
  const verdicts = new Map<string, TaskVerdict>();
  const verdict = (id: string): TaskVerdict => {
    let v = verdicts.get(id);
    if (!v) {
      v = { lost: [], doubled: [] };
      verdicts.set(id, v);
    }
    return v;
  };
  const byTask = new Map<string, StoredEvent[]>();
  for (const e of produced.events) {
    const list = byTask.get(e.taskId) ?? [];
    list.push(e);
    byTask.set(e.taskId, list);
  }
  // The checked tasks and the occurrences recurrence made of them (found in the tasks service).
  const checked = new Set(opts.taskIds);
  for (const t of observed.tasks.values()) if (t.parentTaskId && checked.has(t.parentTaskId)) checked.add(t.id);

  for (const taskId of checked) {
    const v = verdict(taskId);
    const events = (byTask.get(taskId) ?? []).sort((a, b) => a.streamSeq - b.streamSeq);
    const current = observed.tasks.get(taskId);

    // At the source: each event id stored once, each transition published once, no version missing.
    const byId = new Map<string, number[]>();
    for (const e of events) byId.set(e.eventId, [...(byId.get(e.eventId) ?? []), e.streamSeq]);
    for (const [id, seqs] of byId)
      if (seqs.length > 1) v.doubled.push(`event ${id} stored ${seqs.length} times (stream seqs ${seqs.join(", ")})`);
    const distinct = [...new Map(events.map((e) => [e.eventId, e])).values()];
    const byTransition = new Map<string, StoredEvent[]>();
    for (const e of distinct) {
      const key = e.type === "task.created" || e.type === "task.deleted" ? e.type : `${e.type} v${e.version}`;
      byTransition.set(key, [...(byTransition.get(key) ?? []), e]);
    }
    for (const [key, list] of byTransition)
      if (list.length > 1)
        v.doubled.push(
          `${key} published ${list.length} times with different ids (${list.map((e) => e.eventId).join(", ")})`,
        );
    const deleted = distinct.find((e) => e.type === "task.deleted");
    if (!distinct.some((e) => e.type === "task.created")) v.lost.push("task.created never reached the stream");
    if (!current && !deleted) v.lost.push("the task is gone from tasks but no task.deleted reached the stream");
    const versions = new Set(distinct.filter((e) => e.type !== "task.deleted").map((e) => e.version));
    const top = Math.max(Number(current?.version ?? 0), ...versions, 0);
    for (let ver = 1; ver <= top; ver++) if (!versions.has(ver)) v.lost.push(`version ${ver} never reached the stream`);

    // Every consumer whose filter matches applied every event (once: the inbox is keyed by id).
    for (const c of produced.consumers) {
      const seen = observed.inbox.get(c.durable);
      for (const e of distinct) {
        if (!subjectMatches(c.filter, e.subject)) continue;
        if (!seen) v.lost.push(`${c.durable} cannot be checked: ${observed.inboxUnreadable.get(c.durable) ?? "?"}`);
        else if (!seen.has(e.eventId)) v.lost.push(`${c.durable} has not applied ${e.type} ${e.eventId}`);
      }
    }

    // The effects follow from the events; a task with none in the stream is already reported lost.
    if (distinct.length === 0) continue;
    const last = distinct.at(-1);
    const final = deleted ? "deleted" : last?.task?.status === TaskStatus.COMPLETED ? "completed" : "open";

    // analytics: in search once while it exists, with the right status.
    const hit = observed.search.get(taskId);
    if (final !== "deleted") {
      if (!hit) v.lost.push("analytics: not found by SearchTasks");
      else {
        if (hit.hits > 1) v.doubled.push(`analytics: SearchTasks returns it ${hit.hits} times`);
        if (hit.completed !== (final === "completed"))
          v.lost.push(`analytics: shows it ${hit.completed ? "completed" : "open"}, it is ${final}`);
      }
    } else if (hit) v.lost.push("analytics: still found by SearchTasks after task.deleted");

    // reminders: the pending timers follow the task's final state.
    const task = last?.task;
    const dueMs = task?.dueTime ? timestampMs(task.dueTime) : undefined;
    let expectedTimers = 0;
    if (final === "open" && task && dueMs !== undefined) {
      if (dueMs > nowMs) expectedTimers++;
      for (const off of new Set(task.reminderOffsets.map((d) => Number(d.seconds))))
        if (dueMs - off * 1000 > nowMs) expectedTimers++;
    }
    const timers = observed.timers.get(taskId) ?? 0;
    if (timers < expectedTimers) v.lost.push(`reminders: ${timers} pending timers, expected ${expectedTimers}`);
    if (timers > expectedTimers) v.doubled.push(`reminders: ${timers} pending timers, expected ${expectedTimers}`);

    // recurrence: a completed recurring task with a due time continues in exactly one occurrence.
    const completed = distinct.find((e) => e.type === "task.completed");
    if (completed?.task?.recurrenceRule && completed.task.dueTime) {
      const children = [...observed.tasks.values()].filter((t) => t.parentTaskId === taskId);
      if (children.length === 0 && current) v.lost.push("recurrence: no next occurrence");
      if (children.length > 1)
        v.doubled.push(`recurrence: ${children.length} next occurrences (${children.map((t) => t.id).join(", ")})`);
    }
  }

  // analytics counters per user: exactly the user's tasks the stream says exist / are completed.
  for (const userId of opts.userIds) {
    const alive = new Map<string, StoredEvent>();
    const gone = new Set<string>();
    for (const e of produced.events) {
      if (e.userId !== userId) continue;
      if (e.type === "task.deleted") gone.add(e.taskId);
      else if (!alive.has(e.taskId) || (alive.get(e.taskId)?.version ?? 0) < e.version) alive.set(e.taskId, e);
    }
    for (const id of gone) alive.delete(id);
    const completed = [...alive.values()].filter((e) => e.task?.status === TaskStatus.COMPLETED).length;
    const s = observed.stats.get(userId) ?? { created: 0, completed: 0 };
    const v = verdict(`user:${userId}`);
    const compare = (what: string, got: number, want: number) => {
      if (got < want) v.lost.push(`analytics: ${what} ${got}, the stream says ${want}`);
      if (got > want) v.doubled.push(`analytics: ${what} ${got}, the stream says ${want}`);
    };
    compare("created_count", s.created, alive.size);
    compare("completed_count", s.completed, completed);
  }

  let lostCount = 0;
  let doubledCount = 0;
  for (const [id, v] of verdicts) {
    if (v.lost.length === 0 && v.doubled.length === 0) verdicts.delete(id);
    lostCount += v.lost.length;
    doubledCount += v.doubled.length;
  }
  const unsettled = produced.consumers
    .filter((c) => c.inFlight > 0)
    .map((c) => `${c.durable} (${c.inFlight} in flight)`);
  return {
    verdicts,
    unsettled,
    consumers: produced.consumers.map((c) => c.durable).sort(),
    stable: unsettled.length === 0,
    lostCount,
    doubledCount,
  };
}

/** The report as text: one line per lost or doubled finding, by task. */
export function formatReport(report: Report): string {
  const lines: string[] = [];
  for (const [id, v] of report.verdicts) {
    for (const l of v.lost) lines.push(`  LOST    ${id}: ${l}`);
    for (const d of v.doubled) lines.push(`  DOUBLED ${id}: ${d}`);
  }
  if (report.unsettled.length > 0) lines.push(`  unsettled consumers: ${report.unsettled.join(", ")}`);
  else if (!report.stable) lines.push("  (the stream changed while the consumers were read)");
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// The test helper

export interface CheckOptions extends ObserveOptions {
  /** nats://host:port */
  natsUrl: string;
  taskIds: readonly string[];
}

/**
 * Reads the stream, every consumer, and the stream again, and compares the second read with what
 * the consumers showed (a consumer cannot have applied an event the stream does not hold yet).
 */
export async function checkDelivery(opts: CheckOptions): Promise<Report> {
  const nc = await connect({ servers: opts.natsUrl, name: "faults-checker", reconnect: false });
  try {
    const jsm = await nc.jetstreamManager();
    const before = await readProduced(jsm);
    // Each title a checked user's tasks ever had (occurrences share their parent's).
    const queries = new Map<string, Set<string>>(opts.users.map((u) => [u.userId, new Set<string>()]));
    for (const e of before.events) if (e.task?.title) queries.get(e.userId)?.add(e.task.title);
    const observed = await observe(opts, before.consumers, queries);
    const after = await readProduced(jsm);
    const report = assess(after, observed, { taskIds: opts.taskIds, userIds: opts.users.map((u) => u.userId) });
    const settledBefore = before.consumers.every((c) => c.inFlight === 0);
    return { ...report, stable: report.stable && settledBefore && before.lastSeq === after.lastSeq };
  } finally {
    await nc.close();
  }
}

/**
 * Waits (polling, bounded by `timeoutMs`) until every event of the tasks is delivered and applied
 * exactly once and no consumer has anything in flight; otherwise FAILS with every lost and doubled
 * finding, task by task (at once on the first double). Returns the final (clean) report.
 */
export async function expectEveryEventOnce(opts: CheckOptions, timeoutMs = 30_000): Promise<Report> {
  const deadline = Date.now() + timeoutMs;
  let report: Report | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      report = await checkDelivery(opts);
      lastError = undefined;
      if (report.stable && report.lostCount === 0 && report.doubledCount === 0) return report;
      // On a stable snapshot an effect applied twice stays applied twice: no point waiting.
      if (report.stable && report.doubledCount > 0) break;
    } catch (err) {
      lastError = err; // a service still restarting, say; try again until the deadline
    }
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const detail = report ? formatReport(report) : "";
  throw new Error(
    `delivery check failed after ${Date.now() - (deadline - timeoutMs)} ms: ${report?.lostCount ?? "?"} lost, ${report?.doubledCount ?? "?"} doubled ` +
      `over ${opts.taskIds.length} tasks\n${detail}${lastError ? `\n  last error: ${String(lastError)}` : ""}`,
  );
}
