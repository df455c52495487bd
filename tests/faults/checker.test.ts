import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { ensureStreams, STREAMS } from "@taskmesh/platform";
import { type NatsServer, startNats } from "@taskmesh/platform/testing";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assess, formatReport, type Observed, type Produced, readProduced, type StoredEvent } from "./checker.js";

const USER = "0b9b5a52-6a0e-4a8c-9f51-0d7c2f3a1e01";
const NOW = Date.parse("2026-01-01T00:00:00Z");
const DUE = Date.parse("2030-01-07T08:00:00Z");

function task(id: string, version: number, status = TaskStatus.OPEN, parentTaskId = ""): Task {
  return create(TaskSchema, {
    id,
    userId: USER,
    title: `drill ${id}`,
    status,
    dueTime: timestampFromMs(DUE),
    timeZone: "Europe/Paris",
    recurrenceRule: "FREQ=DAILY",
    reminderOffsets: [durationFromMs(900_000)],
    parentTaskId,
    version: BigInt(version),
  });
}

function stored(seq: number, type: string, t: Task, eventId = `ev-${t.id}-${type}-${t.version}`): StoredEvent {
  return {
    streamSeq: seq,
    subject: `taskmesh.${type}`,
    msgId: eventId,
    eventId,
    type,
    userId: USER,
    taskId: t.id,
    version: Number(t.version),
    task: t,
  };
}

/**
 * A recurring task A created and completed (its occurrence C created by recurrence) and an open
 * task B, every event applied by every consumer: the state after a run with nothing lost or doubled.
 */
function cleanRun(): { produced: Produced; observed: Observed } {
  const a1 = task("a", 1);
  const a2 = task("a", 2, TaskStatus.COMPLETED);
  const b1 = task("b", 1);
  const c1 = task("c", 1, TaskStatus.OPEN, "a");
  const events = [
    stored(1, "task.created", a1),
    stored(2, "task.created", b1),
    stored(3, "task.completed", a2),
    stored(4, "task.created", c1),
  ];
  const consumers = [
    { durable: "analytics-g1-tasks", filter: "", inFlight: 0 },
    { durable: "reminders-tasks", filter: "", inFlight: 0 },
    { durable: "recurrence-task-completed", filter: "taskmesh.task.completed", inFlight: 0 },
  ];
  const all = new Set(events.map((e) => e.eventId));
  const observed: Observed = {
    inbox: new Map([
      ["analytics-g1-tasks", new Set(all)],
      ["reminders-tasks", new Set(all)],
      ["recurrence-task-completed", new Set([events[2]?.eventId as string])],
    ]),
    inboxUnreadable: new Map(),
    tasks: new Map([
      ["a", a2],
      ["b", b1],
      ["c", c1],
    ]),
    search: new Map([
      ["a", { hits: 1, completed: true }],
      ["b", { hits: 1, completed: false }],
      ["c", { hits: 1, completed: false }],
    ]),
    stats: new Map([[USER, { created: 3, completed: 1 }]]),
    // Open tasks due in 2030 with one offset: a due timer and a reminder each.
    timers: new Map([
      ["b", 2],
      ["c", 2],
    ]),
  };
  return { produced: { lastSeq: 4, events, undecodable: [], consumers }, observed };
}

const opts = { taskIds: ["a", "b"], userIds: [USER], nowMs: NOW };

describe("the delivery checker", () => {
  it("finds nothing lost or doubled when every event was applied once", () => {
    const { produced, observed } = cleanRun();
    const report = assess(produced, observed, opts);
    expect(formatReport(report)).toBe("");
    expect(report).toMatchObject({ lostCount: 0, doubledCount: 0, unsettled: [], stable: true });
  });

  it("names the task and the consumer when a consumer never applied an event (planted loss)", () => {
    const { produced, observed } = cleanRun();
    observed.inbox.get("recurrence-task-completed")?.clear();
    observed.inbox.get("analytics-g1-tasks")?.delete("ev-b-task.created-1");
    observed.search.delete("b");
    const report = assess(produced, observed, opts);
    expect(report.doubledCount).toBe(0);
    expect(report.verdicts.get("a")?.lost).toEqual([
      "recurrence-task-completed has not applied task.completed ev-a-task.completed-2",
    ]);
    expect(report.verdicts.get("b")?.lost).toEqual([
      "analytics-g1-tasks has not applied task.created ev-b-task.created-1",
      "analytics: not found by SearchTasks",
    ]);
    expect(formatReport(report)).toContain("LOST    b: analytics: not found by SearchTasks");
  });

  it("reports an event missing from the stream (a version gap) as lost", () => {
    const { produced, observed } = cleanRun();
    // tasks is at version 3 of b, but only version 1 was ever published.
    observed.tasks.set("b", task("b", 3));
    const report = assess(produced, observed, opts);
    expect(report.verdicts.get("b")?.lost).toEqual([
      "version 2 never reached the stream",
      "version 3 never reached the stream",
    ]);
  });

  it("names the task when an effect was applied twice (planted double)", () => {
    const { produced, observed } = cleanRun();
    // A second occurrence of a (an idempotency key that did not hold), and a doubled counter.
    observed.tasks.set("c2", task("c2", 1, TaskStatus.OPEN, "a"));
    observed.search.set("c2", { hits: 1, completed: false });
    observed.timers.set("c2", 2);
    produced.events.push(stored(5, "task.created", task("c2", 1, TaskStatus.OPEN, "a")));
    for (const c of ["analytics-g1-tasks", "reminders-tasks"]) observed.inbox.get(c)?.add("ev-c2-task.created-1");
    observed.stats.set(USER, { created: 5, completed: 1 });
    observed.timers.set("b", 4);
    const report = assess(produced, observed, opts);
    expect(report.lostCount).toBe(0);
    expect(report.verdicts.get("a")?.doubled).toEqual(["recurrence: 2 next occurrences (c, c2)"]);
    expect(report.verdicts.get("b")?.doubled).toEqual(["reminders: 4 pending timers, expected 2"]);
    expect(report.verdicts.get(`user:${USER}`)?.doubled).toEqual(["analytics: created_count 5, the stream says 4"]);
  });

  it("reports an event stored twice, and one transition published under two ids, as doubled", () => {
    const { produced, observed } = cleanRun();
    const again = { ...(produced.events[1] as StoredEvent), streamSeq: 9 };
    const otherId = { ...(produced.events[2] as StoredEvent), streamSeq: 10, eventId: "ev-other", msgId: "ev-other" };
    produced.events.push(again, otherId);
    observed.inbox.get("recurrence-task-completed")?.add("ev-other");
    for (const c of ["analytics-g1-tasks", "reminders-tasks"]) observed.inbox.get(c)?.add("ev-other");
    const report = assess(produced, observed, opts);
    expect(report.verdicts.get("b")?.doubled).toEqual(["event ev-b-task.created-1 stored 2 times (stream seqs 2, 9)"]);
    expect(report.verdicts.get("a")?.doubled).toEqual([
      "task.completed v2 published 2 times with different ids (ev-a-task.completed-2, ev-other)",
    ]);
  });

  it("does not call the check final while a consumer still has events in flight", () => {
    const { produced, observed } = cleanRun();
    (produced.consumers[1] as { inFlight: number }).inFlight = 2;
    const report = assess(produced, observed, opts);
    expect(report.unsettled).toEqual(["reminders-tasks (2 in flight)"]);
    expect(report.stable).toBe(false);
  });
});

describe("readProduced against a real nats-server", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  beforeAll(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    await ensureStreams(await nc.jetstreamManager(), [STREAMS.TASKS]);
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  const envelope = (id: string, t: Task): Envelope =>
    create(EnvelopeSchema, {
      id,
      type: "task.created",
      userId: USER,
      aggregateId: t.id,
      payload: { case: "taskCreated", value: { task: t } },
    });

  it("sees JetStream absorb a republish, and flags the same event stored under another Nats-Msg-Id", async () => {
    const js = nc.jetstream();
    const data = toBinary(EnvelopeSchema, envelope("ev-1", task("x", 1)));
    await js.publish("taskmesh.task.created", data, { msgID: "ev-1" });
    const republished = await js.publish("taskmesh.task.created", data, { msgID: "ev-1" });
    expect(republished.duplicate).toBe(true);
    // A producer that did not set Nats-Msg-Id = event id defeats de-dup: a planted double at the source.
    await js.publish("taskmesh.task.created", data, { msgID: "not-the-event-id" });
    await js.publish("taskmesh.task.created", new TextEncoder().encode("not protobuf"), { msgID: "junk" });

    const produced = await readProduced(await nc.jetstreamManager());
    expect(produced.events.map((e) => [e.streamSeq, e.eventId, e.msgId])).toEqual([
      [1, "ev-1", "ev-1"],
      [2, "ev-1", "not-the-event-id"],
    ]);
    expect(produced.undecodable).toEqual([3]);
    const observed: Observed = {
      inbox: new Map(),
      inboxUnreadable: new Map(),
      tasks: new Map([["x", task("x", 1)]]),
      search: new Map([["x", { hits: 1, completed: false }]]),
      stats: new Map(),
      timers: new Map([["x", 2]]),
    };
    const report = assess(produced, observed, { taskIds: ["x"], userIds: [], nowMs: NOW });
    expect(report.verdicts.get("x")).toEqual({ lost: [], doubled: ["event ev-1 stored 2 times (stream seqs 1, 2)"] });
  });
});
