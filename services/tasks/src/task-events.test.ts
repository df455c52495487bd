import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { type Envelope, EnvelopeSchema, UserDeletedSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { Priority, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import {
  createGrpcClient,
  createLogger,
  DEADLETTER_HEADERS,
  ensureStreams,
  NATS_HEALTH_SERVICE,
  NatsLink,
  newEvent,
  STREAMS,
  startTelemetry,
  type Telemetry,
} from "@taskmesh/platform";
import { InMemorySpanExporter, type NatsServer, startNats, waitFor } from "@taskmesh/platform/testing";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startTasks } from "./tasks.test-util.js";

const USER_DELETED_DURABLE = "tasks-user-deleted";

const logger = createLogger("tasks-events-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const DUE = Date.UTC(2031, 2, 9, 14, 0, 0);
/** @opentelemetry/api SpanKind values, as ReadableSpan.kind carries them. */
const SERVER = 1;
const PRODUCER = 3;

interface Stored {
  subject: string;
  envelope: Envelope;
  msgId: string | undefined;
  traceparent: string | undefined;
}

describe("tasks events (real nats-server)", () => {
  let nats: NatsServer;
  let admin: NatsLink;
  let h: Harness;
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;

  beforeAll(async () => {
    // As main.ts does (telemetry-register): the grpc-js instrumentation makes the handler's
    // SERVER span active, which each event's trace context comes from.
    telemetry = await startTelemetry({ serviceName: "tasks", spanExporter: exporter });
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger, reconnectTimeWaitMs: 100 });
    h = await startTasks({ env: { NATS_URL: nats.url }, deps: { outboxReportIntervalMs: 200 } });
  });
  afterAll(async () => {
    await h?.stop();
    await admin?.close();
    await nats?.stop();
    await telemetry?.shutdown();
  });

  /** Every message of `stream`, in stream order, decoded. */
  async function streamMessages(stream: string): Promise<Stored[]> {
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(stream);
    const out: Stored[] = [];
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      out.push({
        subject: m.subject,
        envelope: fromBinary(EnvelopeSchema, m.data),
        msgId: m.header?.get("Nats-Msg-Id"),
        traceparent: m.header?.get("traceparent") || undefined,
      });
    }
    return out;
  }

  /** The user's events in the TASKS stream, once everything committed so far has been published. */
  async function taskEventsOf(userId: string, harness: Harness = h): Promise<Stored[]> {
    await waitFor("the outbox to drain", () => harness.app.events.backlog() === 0);
    return (await streamMessages(STREAMS.TASKS.name)).filter((m) => m.envelope.userId === userId);
  }

  async function publishUserDeleted(event: Envelope, msgID: string = event.id): Promise<void> {
    await ensureStreams(await admin.jetstreamManager(), [STREAMS.USERS]);
    await (await admin.jetstream()).publish("taskmesh.user.deleted", toBinary(EnvelopeSchema, event), { msgID });
  }

  function userDeleted(userId: string): Envelope {
    return newEvent({
      userId,
      aggregateId: userId,
      payload: { case: "userDeleted", value: create(UserDeletedSchema, { userId }) },
    });
  }

  async function failureOf(p: Promise<unknown>): Promise<ConnectError | undefined> {
    return p.then(
      () => undefined,
      (e: unknown) => e as ConnectError,
    );
  }

  function tasksOf(userId: string): number {
    const db = new Database(h.dbPath, { readonly: true });
    try {
      return db.prepare("SELECT count(*) FROM tasks WHERE user_id = ?").pluck().get(userId) as number;
    } finally {
      db.close();
    }
  }

  function idempotencyKeysOf(userId: string): number {
    const db = new Database(h.dbPath, { readonly: true });
    try {
      return db.prepare("SELECT count(*) FROM idempotency_keys WHERE user_id = ?").pluck().get(userId) as number;
    } finally {
      db.close();
    }
  }

  it("publishes created, updated (with changed_fields), completed and deleted in order, each with the whole task", async () => {
    const userId = randomUUID();
    const c = await h.as(userId);
    const created = (
      await c.createTask({
        task: {
          title: "water the plants",
          notes: "balcony",
          dueTime: timestampFromMs(DUE),
          timeZone: "Europe/Paris",
          recurrenceRule: "FREQ=WEEKLY;BYDAY=SU",
          reminderOffsets: [durationFromMs(600_000)],
        },
      })
    ).task;
    const id = created?.id ?? "";
    const updated = (
      await c.updateTask({ taskId: id, title: "water all plants", dueTime: timestampFromMs(DUE + 3600_000) })
    ).task;
    const completed = (await c.completeTask({ taskId: id })).task;
    await c.deleteTask({ taskId: id });

    const events = await taskEventsOf(userId);
    expect(events.map((e) => e.subject)).toEqual([
      "taskmesh.task.created",
      "taskmesh.task.updated",
      "taskmesh.task.completed",
      "taskmesh.task.deleted",
    ]);
    expect(events.map((e) => e.envelope.type)).toEqual([
      "task.created",
      "task.updated",
      "task.completed",
      "task.deleted",
    ]);
    for (const e of events) {
      expect(e.msgId).toBe(e.envelope.id);
      expect(e.envelope.aggregateId).toBe(id);
    }
    // Each event is published in the trace of the call that made it: the relay's publish span is
    // the child of the handler's SERVER span, and the message carries the publish span's context.
    const spans = exporter.getFinishedSpans();
    const methods = ["CreateTask", "UpdateTask", "CompleteTask", "DeleteTask"];
    for (const [i, e] of events.entries()) {
      const publish = spans.find((x) => x.kind === PRODUCER && x.attributes["messaging.message.id"] === e.envelope.id);
      const handler = spans.find((x) => x.spanContext().spanId === publish?.parentSpanContext?.spanId);
      expect(handler?.kind).toBe(SERVER);
      expect(handler?.name).toBe(`grpc.taskmesh.tasks.v1.TaskService/${methods[i]}`);
      expect(publish?.spanContext().traceId).toBe(handler?.spanContext().traceId);
      expect(e.traceparent).toBe(`00-${publish?.spanContext().traceId}-${publish?.spanContext().spanId}-01`);
    }

    const [ce, ue, coe, de] = events.map((e) => e.envelope.payload);
    // The whole task, exactly as the API answered it: consumers never need to call back.
    expect(ce).toEqual({ case: "taskCreated", value: expect.objectContaining({ task: created }) });
    expect(ue?.case).toBe("taskUpdated");
    expect(ue?.case === "taskUpdated" && ue.value.task).toEqual(updated);
    expect(ue?.case === "taskUpdated" && ue.value.changedFields).toEqual(["title", "due_time"]);
    expect(coe).toEqual({ case: "taskCompleted", value: expect.objectContaining({ task: completed }) });
    expect(completed).toMatchObject({ status: TaskStatus.COMPLETED, version: 3n });
    expect(de?.case === "taskDeleted" && de.value).toMatchObject({ taskId: id, version: 4n });
    expect(events[0]?.envelope.occurredAt).toEqual(created?.createTime);
    expect(events[2]?.envelope.occurredAt).toEqual(completed?.completeTime);
  });

  it("publishes nothing more for a repeat: the same idempotency key, completing a completed task, an update to the same values", async () => {
    const userId = randomUUID();
    const c = await h.as(userId);
    const req = { task: { title: "pay rent" }, idempotencyKey: "rent-2031-03" };
    const first = (await c.createTask(req)).task;
    const again = (await c.createTask(req)).task;
    expect(again?.id).toBe(first?.id);
    await c.updateTask({ taskId: first?.id ?? "", title: "pay rent" });
    await c.completeTask({ taskId: first?.id ?? "" });
    await c.completeTask({ taskId: first?.id ?? "" });

    const events = await taskEventsOf(userId);
    expect(events.map((e) => e.envelope.type)).toEqual(["task.created", "task.completed"]);
  });

  it("publishes a priority change and a reopen as task.updated naming what changed, and nothing for a repeated reopen", async () => {
    const userId = randomUUID();
    const c = await h.as(userId);
    const created = (await c.createTask({ task: { title: "renew passport", priority: Priority.P3 } })).task;
    const id = created?.id ?? "";
    const raised = (await c.updateTask({ taskId: id, priority: Priority.P1 })).task;
    await c.completeTask({ taskId: id });
    const reopened = (await c.reopenTask({ taskId: id })).task;
    await c.reopenTask({ taskId: id });

    const events = await taskEventsOf(userId);
    expect(events.map((e) => e.envelope.type)).toEqual([
      "task.created",
      "task.updated",
      "task.completed",
      "task.updated",
    ]);
    const [ce, pe, , re] = events.map((e) => e.envelope.payload);
    expect(ce?.case === "taskCreated" && ce.value.task?.priority).toBe(Priority.P3);
    expect(pe).toEqual({
      case: "taskUpdated",
      value: expect.objectContaining({ task: raised, changedFields: ["priority"] }),
    });
    expect(re).toEqual({
      case: "taskUpdated",
      value: expect.objectContaining({ task: reopened, changedFields: ["status", "complete_time"] }),
    });
    expect(reopened).toMatchObject({ status: TaskStatus.OPEN, priority: Priority.P1, version: 4n });
    expect(events[3]?.envelope.occurredAt).toEqual(reopened?.updateTime);
  });

  it("publishes project and label events (one label.updated per rename), tasks with project, labels and parent, and a task.deleted per task of a deleted project before project.deleted", async () => {
    const userId = randomUUID();
    const c = await h.as(userId);
    const project = (await c.createProject({ name: "Garden" })).project;
    const label = (await c.createLabel({ name: "outside" })).label;
    const parent = (await c.createTask({ task: { title: "dig", projectId: project?.id, labelIds: [label?.id ?? ""] } }))
      .task;
    const child = (await c.createTask({ task: { title: "buy spade", parentId: parent?.id } })).task;
    await c.updateLabel({ labelId: label?.id ?? "", name: "outdoors" });
    await c.deleteLabel({ labelId: label?.id ?? "" });
    await c.completeTask({ taskId: parent?.id, completeChildren: true });
    await c.deleteProject({ projectId: project?.id ?? "" });

    const events = await taskEventsOf(userId);
    expect(events.map((e) => e.subject)).toEqual([
      "taskmesh.project.created",
      "taskmesh.label.created",
      "taskmesh.task.created",
      "taskmesh.task.created",
      "taskmesh.label.updated",
      "taskmesh.label.deleted",
      "taskmesh.task.completed",
      "taskmesh.task.completed",
      "taskmesh.task.deleted",
      "taskmesh.task.deleted",
      "taskmesh.project.deleted",
    ]);
    const payloads = events.map((e) => e.envelope.payload);
    expect(payloads[2]?.case === "taskCreated" && payloads[2].value.task).toMatchObject({
      projectId: project?.id,
      labelIds: [label?.id],
      parentId: "",
    });
    expect(payloads[3]?.case === "taskCreated" && payloads[3].value.task).toMatchObject({
      projectId: project?.id,
      parentId: parent?.id,
    });
    expect(payloads[4]?.case === "labelUpdated" && payloads[4].value.label?.name).toBe("outdoors");
    // The subtask completes first, then its parent; deletion: the subtask first (rank order of
    // the project with top-level tasks last), then the project.
    const completed = payloads.slice(6, 8).map((p) => (p?.case === "taskCompleted" ? p.value.task?.id : ""));
    expect(completed).toEqual([child?.id, parent?.id]);
    const deleted = payloads.slice(8, 10).map((p) => (p?.case === "taskDeleted" ? p.value.taskId : ""));
    expect(deleted).toEqual([child?.id, parent?.id]);
    expect(payloads[10]).toEqual({
      case: "projectDeleted",
      value: expect.objectContaining({ projectId: project?.id, version: 2n }),
    });
  });

  it("publishes task.created for an occurrence (once per key), and nothing per task for PurgeUser", async () => {
    const userId = randomUUID();
    const c = await h.as(userId);
    const parent = (
      await c.createTask({ task: { title: "stand-up", dueTime: timestampFromMs(DUE), recurrenceRule: "FREQ=DAILY" } })
    ).task;
    const internal = h.internal();
    const req = {
      userId,
      parentTaskId: parent?.id ?? "",
      dueTime: timestampFromMs(DUE + 86_400_000),
      idempotencyKey: `${parent?.id}:20310310`,
    };
    const occurrence = await internal.createOccurrence(req);
    expect((await internal.createOccurrence(req)).created).toBe(false);

    let events = await taskEventsOf(userId);
    expect(events.map((e) => e.envelope.type)).toEqual(["task.created", "task.created"]);
    const payload = events[1]?.envelope.payload;
    expect(payload?.case === "taskCreated" && payload.value.task).toEqual(occurrence.task);
    expect(occurrence.task?.parentTaskId).toBe(parent?.id);

    expect((await internal.purgeUser({ userId })).deletedCount).toBe(2n);
    events = await taskEventsOf(userId);
    expect(events).toHaveLength(2);
  });

  describe("user.deleted (choreography)", () => {
    it("purges that user's tasks and idempotency keys once, leaves other users' tasks alone, and a redelivered copy has no effect", async () => {
      const gone = randomUUID();
      const stays = randomUUID();
      const cg = await h.as(gone);
      const cs = await h.as(stays);
      await cg.createTask({ task: { title: "one" }, idempotencyKey: "k1" });
      await cg.createTask({ task: { title: "two" } });
      const kept = (await cs.createTask({ task: { title: "not mine to lose" }, idempotencyKey: "k1" })).task;
      expect(idempotencyKeysOf(gone)).toBe(1);
      const before = h.app.events.userDeleted;
      const tasksEventsBefore = (await taskEventsOf(gone)).length;

      const event = userDeleted(gone);
      await publishUserDeleted(event);
      await waitFor("the event applied", () => h.app.events.userDeleted.applied === before.applied + 1);
      expect(tasksOf(gone)).toBe(0);
      expect(idempotencyKeysOf(gone)).toBe(0);
      expect((await cs.listTasks({})).tasks).toEqual([kept]);
      expect(idempotencyKeysOf(stays)).toBe(1);
      // The purge itself publishes no per-task events.
      expect(await taskEventsOf(gone)).toHaveLength(tasksEventsBefore);

      // The deleted user's token is still a valid JWT (until it expires), but writes nothing more:
      // a task written now would belong to nobody and never be purged.
      const refused = await failureOf(cg.createTask({ task: { title: "created after the deletion" } }));
      expect(refused?.code).toBe(Code.Unauthenticated);
      expect(refused?.rawMessage).toBe("the account of this token has been deleted");
      expect((await failureOf(cg.listTasks({})))?.code).toBe(Code.Unauthenticated);

      // The same event again as another stream message (a republish past the de-dup window):
      // the inbox has its id, so it is acked as a duplicate and applied once.
      await publishUserDeleted(event, `${event.id}-copy`);
      await waitFor(
        "the copy acked as a duplicate",
        () => h.app.events.userDeleted.duplicates === before.duplicates + 1,
      );
      expect(h.app.events.userDeleted.applied).toBe(before.applied + 1);
      expect((await cs.listTasks({})).tasks).toEqual([kept]);

      const jsm = await admin.jetstreamManager();
      const info = await waitFor("every delivery acked", async () => {
        const i = await jsm.consumers.info(STREAMS.USERS.name, USER_DELETED_DURABLE);
        return i.num_ack_pending === 0 && i.num_pending === 0 ? i : undefined;
      });
      expect(info.config).toMatchObject({ ack_policy: "explicit", filter_subject: "taskmesh.user.deleted" });
    });

    it("dead-letters a user.deleted without a user id, deleting nothing", async () => {
      const userId = randomUUID();
      const c = await h.as(userId);
      await c.createTask({ task: { title: "survives a malformed event" } });
      const before = h.app.events.userDeleted;
      const bad = newEvent({
        userId: "",
        aggregateId: "",
        payload: { case: "userDeleted", value: create(UserDeletedSchema, { userId: "" }) },
      });
      await publishUserDeleted(bad);
      await waitFor("dead-lettered", () => h.app.events.userDeleted.deadLettered === before.deadLettered + 1);
      const dl = await (await admin.jetstreamManager()).streams.getMessage(STREAMS.DEADLETTER.name, {
        last_by_subj: `taskmesh.deadletter.${USER_DELETED_DURABLE}`,
      });
      expect(dl.header.get(DEADLETTER_HEADERS.eventId)).toBe(bad.id);
      expect(dl.header.get(DEADLETTER_HEADERS.reason)).toBe("handler failed: user.deleted has no user_id");
      expect((await c.listTasks({})).tasks).toHaveLength(1);
    });
  });

  it("keeps creating tasks while nats-server is stopped (ready on the database alone) and delivers the event after it restarts", async () => {
    const other = await startNats();
    const t = await startTasks({ env: { NATS_URL: other.url }, deps: { outboxReportIntervalMs: 200 } });
    const otherAdmin = new NatsLink({ servers: other.url, name: "test-admin-2", logger, reconnectTimeWaitMs: 100 });
    const health = createGrpcClient(Health, { address: t.address });
    try {
      await waitFor("NATS connected", () => t.app.events.natsConnected);
      await other.kill("SIGTERM");
      await waitFor("the link to notice", () => !t.app.events.natsConnected);

      const userId = randomUUID();
      const { task } = await (await t.as(userId)).createTask({ task: { title: "written while NATS is away" } });
      expect(task?.title).toBe("written while NATS is away");
      expect(t.app.events.backlog()).toBe(1);
      // Readiness is re-evaluated every 2 s: it must stay SERVING across a few evaluations.
      for (const until = Date.now() + 2500; Date.now() < until; await new Promise((r) => setTimeout(r, 250))) {
        expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      }
      await waitFor(
        "the nats health entry to say NOT_SERVING",
        async () =>
          (await health.check({ service: NATS_HEALTH_SERVICE })).status ===
          HealthCheckResponse_ServingStatus.NOT_SERVING,
      );

      await other.restart();
      await waitFor("the outbox to drain after NATS returned", () => t.app.events.backlog() === 0, 20_000);
      await waitFor("the admin link", () => otherAdmin.connected);
      const jsm = await otherAdmin.jetstreamManager();
      const m = await jsm.streams.getMessage(STREAMS.TASKS.name, { last_by_subj: "taskmesh.task.created" });
      const payload = fromBinary(EnvelopeSchema, m.data).payload;
      expect(payload.case === "taskCreated" && payload.value.task).toEqual(task);
    } finally {
      health.close();
      await otherAdmin.close();
      await t.stop();
      await other.stop();
    }
  });
});
