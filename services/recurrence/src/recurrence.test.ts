import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { type Envelope, EnvelopeSchema, TaskCompletedSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  createGrpcClient,
  createLogger,
  createUserTokenVerifier,
  DEADLETTER_HEADERS,
  ensureStreams,
  type GrpcClient,
  NatsLink,
  STREAMS,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
} from "@taskmesh/platform";
import { freePort, type NatsServer, startNats, tempDir, waitFor } from "@taskmesh/platform/testing";
import { build as buildTasks, loadTasksConfig, type TasksApp } from "@taskmesh/tasks/server";
import Database from "better-sqlite3";
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRecurrenceConfig } from "./config.js";
import { build, type RecurrenceApp } from "./server.js";

const logger = createLogger("recurrence-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "recurrence-test-secret-of-at-least-32-chars";

const iso = (t: Task) => (t.dueTime ? new Date(timestampMs(t.dueTime)).toISOString() : undefined);

describe("recurrence service (real nats-server, real tasks service)", () => {
  const dir = tempDir("recurrence-test-");
  let nats: NatsServer;
  let admin: NatsLink;
  let tasks: TasksApp;
  let tasksEnv: Record<string, string>;
  let recurrence: RecurrenceApp;
  let recurrenceDb: string;
  let signToken: (userId: string) => Promise<string>;
  let verifier: ReturnType<typeof createUserTokenVerifier>;
  const clients: { close(): void }[] = [];
  /** From listen() to the first SERVING answer. */
  let readyAfterMs = Number.NaN;

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger, reconnectTimeWaitMs: 100 });
    await ensureStreams(await admin.jetstreamManager(), [STREAMS.TASKS]);

    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
    verifier = createUserTokenVerifier(createLocalJWKSet({ keys: [jwk] }));
    signToken = (userId) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
        .setSubject(userId)
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("10m")
        .sign(privateKey);

    // A fixed port, so tasks can be stopped and started again at the same address.
    tasksEnv = {
      GRPC_PORT: String(await freePort()),
      TASKMESH_DATA_DIR: dir.path,
      TASKMESH_SERVICE_SECRET: SECRET,
      NATS_URL: nats.url,
      LOG_LEVEL: "silent",
    };
    tasks = buildTasks(loadTasksConfig(tasksEnv), { userTokens: verifier, logger });
    await tasks.listen();

    const config = loadRecurrenceConfig({
      GRPC_PORT: "0",
      TASKMESH_DATA_DIR: dir.path,
      NATS_URL: nats.url,
      TASKS_ADDR: `127.0.0.1:${tasksEnv.GRPC_PORT}`,
      TASKS_TIMEOUT_MS: "2000",
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    });
    recurrenceDb = config.dbPath;
    recurrence = build(config, {
      logger,
      retryBackoff: { initialMs: 100, maxMs: 500 },
      consumer: { ackWaitMs: 5000, maxDeliver: 40 },
    });
    const { grpcPort } = await recurrence.listen();
    const listenedAt = performance.now();
    const health = createGrpcClient(Health, { address: `127.0.0.1:${grpcPort}` });
    clients.push(health);
    // Ready once the database answers and NATS is connected.
    await waitFor(
      "recurrence to be ready",
      async () => (await health.check({ service: "" })).status === HealthCheckResponse_ServingStatus.SERVING,
      { intervalMs: 10 },
    );
    readyAfterMs = performance.now() - listenedAt;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await recurrence?.shutdown();
    await tasks?.shutdown();
    await admin?.close();
    await nats?.stop();
    dir.remove();
  });

  it("is ready as soon as its NATS link connects, not at the next readiness pass 2 s later", () => {
    // The check at listen() runs before the link exists (it connects in the background).
    expect(readyAfterMs).toBeLessThan(1500);
  });

  async function user(): Promise<{ id: string; client: GrpcClient<typeof TaskService> }> {
    const id = randomUUID();
    const token = await signToken(id);
    const client = createGrpcClient(TaskService, {
      address: `127.0.0.1:${tasksEnv.GRPC_PORT}`,
      metadata: () => ({ authorization: `Bearer ${token}` }),
    });
    clients.push(client);
    return { id, client };
  }

  /** task.completed as tasks publishes it: the full task in the envelope. */
  function completedEvent(task: Task): Envelope {
    return create(EnvelopeSchema, {
      id: randomUUID(),
      type: "task.completed",
      occurredAt: timestampFromDate(new Date()),
      userId: task.userId,
      aggregateId: task.id,
      payload: { case: "taskCompleted", value: create(TaskCompletedSchema, { task }) },
    });
  }

  /**
   * Publishes `event` on the TASKS stream. `msgId` defaults to the event id (as the outbox relay
   * does); another value gets the same event past JetStream's duplicate window, i.e. a redelivery.
   */
  async function publish(event: Envelope, msgId = event.id): Promise<void> {
    const js = await admin.jetstream();
    await js.publish("taskmesh.task.completed", toBinary(EnvelopeSchema, event), { msgID: msgId });
  }

  /**
   * Completes the task through tasks and publishes its task.completed, then waits until recurrence
   * has handled that event. (Once tasks publishes task.completed itself, its own event arrives too:
   * the same completion under another event id, which must not create a second occurrence.)
   */
  async function complete(client: GrpcClient<typeof TaskService>, taskId: string): Promise<Envelope> {
    const done = (await client.completeTask({ taskId })).task as Task;
    const event = completedEvent(done);
    await publish(event);
    await handled(event.id);
    return event;
  }

  /** Waits until recurrence has recorded `eventId` in its inbox (the event's effect committed). */
  async function handled(eventId: string): Promise<void> {
    await waitFor(
      `event ${eventId} to be handled`,
      () => query("SELECT 1 FROM inbox WHERE event_id = ?", eventId).length > 0,
    );
  }

  /** Reads recurrence's database over a separate read-only connection. */
  function query(sql: string, ...params: unknown[]): unknown[] {
    const db = new Database(recurrenceDb, { readonly: true });
    try {
      return db.prepare(sql).all(...params);
    } finally {
      db.close();
    }
  }

  async function tasksOf(client: GrpcClient<typeof TaskService>): Promise<Task[]> {
    return (await client.listTasks({ pageSize: 100 })).tasks;
  }

  function processedRows(parentTaskId: string) {
    return query(
      "SELECT child_task_id, due_time FROM processed_occurrences WHERE parent_task_id = ?",
      parentTaskId,
    ) as { child_task_id: string; due_time: number }[];
  }

  it("creates exactly one next occurrence of a completed weekly task, at 09:00 Paris time after the DST change", async () => {
    const { client } = await user();
    const { task } = await client.createTask({
      task: {
        title: "weekly review",
        notes: "look back, plan ahead",
        dueTime: timestampFromMs(Date.parse("2030-03-25T08:00:00Z")), // Monday 09:00 CET
        timeZone: "Europe/Paris",
        recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
      },
    });
    const parent = task as Task;
    await complete(client, parent.id);

    const all = await tasksOf(client);
    expect(all).toHaveLength(2);
    const next = all.find((t) => t.id !== parent.id) as Task;
    expect(next).toMatchObject({
      parentTaskId: parent.id,
      title: "weekly review",
      notes: "look back, plan ahead",
      timeZone: "Europe/Paris",
      recurrenceRule: parent.recurrenceRule,
    });
    expect(iso(next)).toBe("2030-04-01T07:00:00.000Z"); // Monday 09:00 CEST
    expect(processedRows(parent.id)).toEqual([
      { child_task_id: next.id, due_time: Date.parse("2030-04-01T07:00:00Z") },
    ]);
  });

  it("creates nothing more when the same event is delivered again, or the same completion is published twice", async () => {
    const { client } = await user();
    const { task } = await client.createTask({
      task: {
        title: "water plants",
        dueTime: timestampFromMs(Date.parse("2030-06-03T07:00:00Z")),
        recurrenceRule: "FREQ=WEEKLY",
      },
    });
    const event = await complete(client, (task as Task).id);
    expect(await tasksOf(client)).toHaveLength(2);

    // The same event again (as after a lost ack, or a relay republishing after the duplicate window).
    const dupesBefore = recurrence.stats().taskCompleted.duplicates;
    await publish(event, `${event.id}-again`);
    await waitFor(
      "the redelivery to be acked as a duplicate",
      () => recurrence.stats().taskCompleted.duplicates > dupesBefore,
    );
    // The same completion under a new event id: the idempotency key (parent + instant) holds.
    const again = create(EnvelopeSchema, { ...event, id: randomUUID() });
    await publish(again);
    await handled(again.id);

    const all = await tasksOf(client);
    expect(all).toHaveLength(2);
    expect(processedRows((task as Task).id)).toHaveLength(1);
  });

  it("keeps the occurrence of a completion when the task is reopened, and completing it again creates no second one", async () => {
    const { client } = await user();
    const { task } = await client.createTask({
      task: {
        title: "pay rent",
        dueTime: timestampFromMs(Date.parse("2030-07-01T08:00:00Z")),
        recurrenceRule: "FREQ=MONTHLY",
      },
    });
    const parent = task as Task;
    await complete(client, parent.id);
    const [first] = processedRows(parent.id);
    expect(first?.due_time).toBe(Date.parse("2030-08-01T08:00:00Z"));

    const reopened = (await client.reopenTask({ taskId: parent.id })).task;
    expect(reopened?.status).toBe(TaskStatus.OPEN);
    // Reopening deletes nothing: the occurrence is still there, open.
    const occurrence = (await tasksOf(client)).find((t) => t.id === first?.child_task_id);
    expect(occurrence?.status).toBe(TaskStatus.OPEN);

    // Completed again at the same due time: the same (parent, next due) key, so no second occurrence.
    await complete(client, parent.id);
    const all = await tasksOf(client);
    expect(all.map((t) => t.id).sort()).toEqual([parent.id, first?.child_task_id].sort());
    expect(processedRows(parent.id)).toEqual([first]);
  });

  it("creates nothing for a completed task that does not recur", async () => {
    const { client } = await user();
    const { task } = await client.createTask({
      task: { title: "file taxes", dueTime: timestampFromMs(Date.parse("2030-04-15T16:00:00Z")) },
    });
    await complete(client, (task as Task).id);
    expect((await tasksOf(client)).map((t) => t.id)).toEqual([(task as Task).id]);
    expect(processedRows((task as Task).id)).toEqual([]);
  });

  it("continues the series from the occurrence it created and stops after COUNT, counted from the first", async () => {
    const { client } = await user();
    const { task } = await client.createTask({
      task: {
        title: "physio",
        dueTime: timestampFromMs(Date.parse("2030-10-30T13:00:00Z")), // Wednesday 09:00 EDT
        timeZone: "America/New_York",
        recurrenceRule: "RRULE:FREQ=WEEKLY;COUNT=3",
      },
    });
    const first = task as Task;
    await complete(client, first.id);
    const second = (await tasksOf(client)).find((t) => t.parentTaskId === first.id) as Task;
    expect(iso(second)).toBe("2030-11-06T14:00:00.000Z"); // 09:00 EST (clocks went back on 2030-11-03)

    await complete(client, second.id);
    const third = (await tasksOf(client)).find((t) => t.parentTaskId === second.id) as Task;
    expect(iso(third)).toBe("2030-11-13T14:00:00.000Z");

    await complete(client, third.id);
    expect(await tasksOf(client)).toHaveLength(3); // COUNT=3: the series is over
  });

  it("gives up on an occurrence whose parent has been deleted, without retrying", async () => {
    const { client } = await user();
    const { task } = await client.createTask({
      task: {
        title: "gone",
        dueTime: timestampFromMs(Date.parse("2030-01-07T09:00:00Z")),
        recurrenceRule: "FREQ=DAILY",
      },
    });
    // Completed only in the event: completing it through tasks would (once tasks publishes
    // task.completed itself) race its own event against the delete below.
    const done = { ...(task as Task), status: TaskStatus.COMPLETED };
    await client.deleteTask({ taskId: done.id });
    const { retried, deadLettered } = recurrence.stats().taskCompleted;
    const event = completedEvent(done);
    await publish(event);
    await handled(event.id);
    expect(recurrence.stats().taskCompleted).toMatchObject({ retried, deadLettered });
    expect(await tasksOf(client)).toEqual([]);
  });

  it("refuses a never-matching rule at CreateTask, naming recurrence_rule, within a fraction of a second", async () => {
    const { client } = await user();
    const started = Date.now();
    const err = await client
      .createTask({
        task: {
          title: "never",
          dueTime: timestampFromMs(Date.parse("2030-01-07T09:00:00Z")),
          recurrenceRule: "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30",
        },
      })
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toMatch(/^task\.recurrence_rule: /);
    expect(await tasksOf(client)).toEqual([]);
  });

  it("retries while tasks is down and creates the occurrence once it is back", async () => {
    const { client } = await user();
    const { task } = await client.createTask({
      task: {
        title: "standup",
        dueTime: timestampFromMs(Date.parse("2030-02-04T09:30:00Z")),
        recurrenceRule: "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
      },
    });
    // Completed only in the event (not through tasks), so that this event is the only one there is.
    const done = { ...(task as Task), status: TaskStatus.COMPLETED };
    await tasks.shutdown();
    try {
      const retriedBefore = recurrence.stats().taskCompleted.retried;
      await publish(completedEvent(done));
      await waitFor(
        "a transient failure to be retried",
        () => recurrence.stats().taskCompleted.retried > retriedBefore,
      );
    } finally {
      tasks = buildTasks(loadTasksConfig(tasksEnv), { userTokens: verifier, logger });
      await tasks.listen();
    }
    // The test's own channel to tasks reconnects with backoff too: a failed poll is just a miss.
    const next = await waitFor(
      "the occurrence after tasks came back",
      async () => (await tasksOf(client).catch(() => [])).find((t) => t.parentTaskId === done.id),
      30_000,
    );
    expect(iso(next)).toBe("2030-02-05T09:30:00.000Z");
    expect(await tasksOf(client)).toHaveLength(2);
    expect(recurrence.stats().taskCompleted.deadLettered).toBe(0);
  });

  // Last: the other tests check that nothing was dead-lettered.
  it("dead-letters a never-matching rule that reaches the consumer after its budget, without holding up another user's occurrence", async () => {
    const bad = await user();
    const good = await user();
    // A bad rule as an older tasks (or another producer) could still publish it: only in the event.
    const { task: badTask } = await bad.client.createTask({
      task: { title: "bad", dueTime: timestampFromMs(Date.parse("2030-01-07T09:00:00Z")) },
    });
    const poisoned = {
      ...(badTask as Task),
      status: TaskStatus.COMPLETED,
      recurrenceRule: "RRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30",
    };
    const { task: goodTask } = await good.client.createTask({
      task: {
        title: "daily",
        dueTime: timestampFromMs(Date.parse("2030-01-07T09:00:00Z")),
        recurrenceRule: "FREQ=DAILY",
      },
    });
    const { deadLettered } = recurrence.stats().taskCompleted;
    const started = Date.now();
    const badEvents = [completedEvent(poisoned), completedEvent(poisoned), completedEvent(poisoned)];
    for (const e of badEvents) await publish(e);
    const goodDone = (await good.client.completeTask({ taskId: (goodTask as Task).id })).task as Task;
    const goodEvent = completedEvent(goodDone);
    await publish(goodEvent);
    await handled(goodEvent.id);
    // Three bad rules ahead of it cost at most 3 × the 200 ms budget (today: ~7 s each).
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(5000);
    expect((await tasksOf(good.client)).map(iso).sort()).toEqual([
      "2030-01-07T09:00:00.000Z",
      "2030-01-08T09:00:00.000Z",
    ]);
    await waitFor(
      "the bad events to be dead-lettered",
      () => recurrence.stats().taskCompleted.deadLettered >= deadLettered + 3,
    );
    const jsm = await admin.jetstreamManager();
    const last = await jsm.streams.getMessage(STREAMS.DEADLETTER.name, {
      last_by_subj: "taskmesh.deadletter.recurrence-task-completed",
    });
    expect(last.header.get(DEADLETTER_HEADERS.reason)).toMatch(/no next occurrence of .* found within 200 ms/);
    expect((await tasksOf(bad.client)).length).toBe(1);
  });
});
