import { randomUUID } from "node:crypto";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { ReminderInternalService, TimerKind } from "@taskmesh/gen/taskmesh/reminders/v1/reminders_pb";
import {
  createGrpcClient,
  createLogger,
  ensureStreams,
  type GrpcClient,
  NatsLink,
  ServiceTokens,
  STREAMS,
} from "@taskmesh/platform";
import { type NatsServer, startNats, tempDir, waitFor } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRemindersConfig, type RemindersConfig } from "./config.js";
import { events, task } from "./reminders.test-util.js";
import { build, type RemindersApp } from "./server.js";

const logger = createLogger("reminders-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "reminders-test-secret-of-at-least-32-chars";
const MIN = 60_000;

describe("reminders service (real nats-server, injected clock)", () => {
  const dir = tempDir("reminders-test-");
  let nats: NatsServer;
  let admin: NatsLink;
  let config: RemindersConfig;
  let app: RemindersApp | undefined;
  let schedule: GrpcClient<typeof ReminderInternalService>;
  let health: GrpcClient<typeof Health>;
  /** The service's clock. Far from the real time on purpose: nothing may depend on Date.now(). */
  let now = Date.parse("2031-06-01T08:00:00Z");
  let grpcPort = 0;
  /** performance.now() when the latest start()'s listen() resolved. */
  let listenedAt = 0;

  async function start(): Promise<void> {
    app = build(config, {
      logger,
      clock: () => now,
      retryBackoff: { initialMs: 50, maxMs: 200 },
      relayPollIntervalMs: 100,
    });
    ({ grpcPort } = await app.listen());
    listenedAt = performance.now();
    for (const c of [schedule, health]) c?.close();
    const tokens = new ServiceTokens(SECRET, "reminders-test");
    schedule = createGrpcClient(ReminderInternalService, {
      address: `127.0.0.1:${grpcPort}`,
      metadata: async () => ({ authorization: `Bearer ${await tokens.token()}` }),
    });
    health = createGrpcClient(Health, { address: `127.0.0.1:${grpcPort}` });
  }

  async function stop(): Promise<void> {
    await app?.shutdown();
    app = undefined;
  }

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger, reconnectTimeWaitMs: 100 });
    await ensureStreams(await admin.jetstreamManager(), [STREAMS.TASKS, STREAMS.USERS, STREAMS.REMINDERS]);
    config = loadRemindersConfig({
      GRPC_PORT: "0",
      TASKMESH_DATA_DIR: dir.path,
      NATS_URL: nats.url,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    });
    await start();
  });

  afterAll(async () => {
    schedule?.close();
    health?.close();
    await stop();
    await admin?.close();
    await nats?.stop();
    dir.remove();
  });

  /** Publishes an event as its producer's relay does (Nats-Msg-Id = event id unless told otherwise). */
  async function publish(e: Envelope, msgID = e.id): Promise<void> {
    const js = await admin.jetstream();
    await js.publish(`taskmesh.${e.type}`, toBinary(EnvelopeSchema, e), { msgID });
  }

  /** Every event on the REMINDERS stream about `taskId`, in stream order. */
  async function fired(taskId: string): Promise<Envelope[]> {
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.REMINDERS.name);
    const out: Envelope[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.REMINDERS.name, { seq });
      const e = fromBinary(EnvelopeSchema, m.data);
      if (e.aggregateId === taskId) out.push(e);
    }
    return out;
  }

  /** Waits until the relay has nothing left to publish, so "exactly n" is not read too early. */
  async function settled(): Promise<void> {
    await waitFor("the outbox to drain", () => app?.stats().backlog === 0);
  }

  async function timersOf(userId: string) {
    return (await schedule.listSchedule({ userId })).timers;
  }

  it("is ready once the database answers and NATS is connected, as soon as the link connects", async () => {
    await waitFor(
      "readiness",
      async () => (await health.check({ service: "" })).status === HealthCheckResponse_ServingStatus.SERVING,
      { intervalMs: 10 },
    );
    // The check at listen() runs before the link exists; the next periodic one is 2 s later.
    expect(performance.now() - listenedAt).toBeLessThan(1500);
  });

  it("refuses ListSchedule without a service token", async () => {
    const bare = createGrpcClient(ReminderInternalService, { address: `127.0.0.1:${grpcPort}` });
    const err = await bare.listSchedule({ userId: randomUUID() }).catch((e: unknown) => e);
    bare.close();
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
  });

  it("schedules from task.created, fires one reminder.due past the reminder and one task.due past the due time", async () => {
    const userId = randomUUID();
    const t = task({ userId, title: "Submit the report", due: now + 60 * MIN, offsets: [15 * 60], version: 1 });
    await publish(events.created(t));

    const timers = await waitFor("the timers to be scheduled", async () => {
      const ts = await timersOf(userId);
      return ts.length === 2 ? ts : undefined;
    });
    expect(
      timers.map((x) => [x.kind, x.offsetSeconds, timestampMs(x.fireTime as NonNullable<typeof x.fireTime>)]),
    ).toEqual([
      [TimerKind.REMINDER, 900n, now + 45 * MIN],
      [TimerKind.DUE, 0n, now + 60 * MIN],
    ]);

    // Nothing is due yet.
    expect(app?.tick()).toBe(0);

    now += 46 * MIN;
    expect(app?.tick()).toBe(1);
    await waitFor("reminder.due on the stream", async () => (await fired(t.id)).length === 1);
    app?.tick();
    await settled();
    const [reminder] = await fired(t.id);
    expect(reminder?.type).toBe("reminder.due");
    expect(reminder?.userId).toBe(userId);
    if (reminder?.payload.case !== "reminderDue") throw new Error("not a ReminderDue");
    expect(reminder.payload.value.taskId).toBe(t.id);
    expect(reminder.payload.value.title).toBe("Submit the report");
    expect(reminder.payload.value.offsetSeconds).toBe(900n);
    expect(reminder.payload.value.timeZone).toBe("Europe/Paris");
    expect((await timersOf(userId)).map((x) => x.kind)).toEqual([TimerKind.DUE]);

    now += 15 * MIN;
    app?.tick();
    await waitFor("task.due on the stream", async () => (await fired(t.id)).length === 2);
    app?.tick();
    await settled();
    expect((await fired(t.id)).map((e) => e.type)).toEqual(["reminder.due", "task.due"]);
    expect(await timersOf(userId)).toEqual([]);
  });

  it("after a restart with the clock already past, fires what came due while it was down, once", async () => {
    const userId = randomUUID();
    const t = task({ userId, due: now + 60 * MIN, offsets: [30 * 60], version: 1 });
    await publish(events.created(t));
    await waitFor("the timers to be scheduled", async () => (await timersOf(userId)).length === 2);

    await stop();
    now += 2 * 60 * MIN;
    await start(); // a new build on the same database: listen() ticks at once
    await waitFor("both missed timers on the stream", async () => (await fired(t.id)).length === 2);

    await stop();
    await start();
    app?.tick();
    await settled();
    expect((await fired(t.id)).map((e) => e.type)).toEqual(["reminder.due", "task.due"]);
  });

  it("publishes after a restart what had fired but not been published (a crash after the commit)", async () => {
    const userId = randomUUID();
    const t = task({ userId, due: now + 10 * MIN, version: 1 });
    await publish(events.created(t));
    await waitFor("the timer to be scheduled", async () => (await timersOf(userId)).length === 1);
    await stop();

    // A process that fires the timer and dies before its relay publishes anything.
    now += 11 * MIN;
    const crashed = build(config, { logger, clock: () => now });
    expect(crashed.tick()).toBe(1);
    await crashed.shutdown();
    expect(await fired(t.id)).toEqual([]);

    await start();
    await waitFor("task.due on the stream", async () => (await fired(t.id)).length === 1);
    app?.tick();
    await settled();
    expect((await fired(t.id)).map((e) => e.type)).toEqual(["task.due"]);
  });

  it("fires nothing for a task completed before its reminder and due time", async () => {
    const userId = randomUUID();
    const t = task({ userId, due: now + 60 * MIN, offsets: [600], version: 1 });
    await publish(events.created(t));
    await waitFor("the timers to be scheduled", async () => (await timersOf(userId)).length === 2);
    await publish(events.completed(task({ userId, id: t.id, due: now + 60 * MIN, offsets: [600], version: 2 })));
    await waitFor("the timers to be cancelled", async () => (await timersOf(userId)).length === 0);

    now += 2 * 60 * MIN;
    expect(app?.tick()).toBe(0);
    await settled();
    expect(await fired(t.id)).toEqual([]);
  });

  it("reschedules on task.updated and cancels on task.deleted", async () => {
    const userId = randomUUID();
    const t = task({ userId, due: now + 60 * MIN, version: 1 });
    await publish(events.created(t));
    await publish(events.updated(task({ userId, id: t.id, due: now + 120 * MIN, offsets: [300], version: 2 })));
    const moved = await waitFor("the timers to move", async () => {
      const ts = await timersOf(userId);
      return ts.length === 2 ? ts : undefined;
    });
    expect(moved.map((x) => timestampMs(x.fireTime as NonNullable<typeof x.fireTime>))).toEqual([
      now + 115 * MIN,
      now + 120 * MIN,
    ]);
    await publish(events.deleted(t, 3));
    await waitFor("the timers to be cancelled", async () => (await timersOf(userId)).length === 0);
  });

  it("keeps one set of timers and fires once when task.created is delivered again", async () => {
    const userId = randomUUID();
    const t = task({ userId, due: now + 30 * MIN, offsets: [600], version: 1 });
    const created = events.created(t);
    await publish(created);
    // The same event again, past JetStream's de-duplication (as after its window): the inbox absorbs it.
    await publish(created, `${created.id}-again`);
    // The same task version under another event id: the version check absorbs it.
    await publish(events.created(t));
    await waitFor("all three deliveries applied", () => {
      const s = app?.stats().tasks;
      return s && s.applied + s.duplicates >= 3 ? s : undefined;
    });
    await waitFor("the consumer to catch up", async () => {
      const jsm = await admin.jetstreamManager();
      const info = await jsm.consumers.info(STREAMS.TASKS.name, "reminders-tasks");
      return info.num_pending === 0 && info.num_ack_pending === 0;
    });
    expect((await timersOf(userId)).map((x) => x.kind)).toEqual([TimerKind.REMINDER, TimerKind.DUE]);

    now += 31 * MIN;
    app?.tick();
    await waitFor("both events on the stream", async () => (await fired(t.id)).length === 2);
    app?.tick();
    await settled();
    expect((await fired(t.id)).map((e) => e.type)).toEqual(["reminder.due", "task.due"]);
  });

  it("drops a user's timers on user.deleted and leaves other users' alone", async () => {
    const gone = randomUUID();
    const stays = randomUUID();
    const a = task({ userId: gone, due: now + 60 * MIN, offsets: [600], version: 1 });
    const b = task({ userId: stays, due: now + 60 * MIN, version: 1 });
    await publish(events.created(a));
    await publish(events.created(b));
    await waitFor("the timers to be scheduled", async () => (await timersOf(gone)).length === 2);
    await waitFor("the other user's timer", async () => (await timersOf(stays)).length === 1);

    await publish(events.userDeleted(gone));
    await waitFor("the deleted user's timers to go", async () => (await timersOf(gone)).length === 0);
    expect(await timersOf(stays)).toHaveLength(1);

    now += 61 * MIN;
    app?.tick();
    await waitFor("the other user's task.due", async () => (await fired(b.id)).length === 1);
    await settled();
    expect(await fired(a.id)).toEqual([]);
  });
});
