import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { ReminderInternalService, TimerKind } from "@taskmesh/gen/taskmesh/reminders/v1/reminders_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  createGrpcClient,
  createLogger,
  createUserTokenVerifier,
  NatsLink,
  ServiceTokens,
  STREAMS,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
} from "@taskmesh/platform";
import { type NatsServer, startNats, tempDir, waitFor } from "@taskmesh/platform/testing";
import { build as buildTasks, loadTasksConfig, type TasksApp } from "@taskmesh/tasks/server";
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRemindersConfig } from "./config.js";
import { build, type RemindersApp } from "./server.js";

const logger = createLogger("reminders-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "reminders-test-secret-of-at-least-32-chars";
const MIN = 60_000;

/** The contract with the real producer: the events tasks publishes drive the timers. */
describe("reminders fed by the real tasks service", () => {
  const dir = tempDir("reminders-tasks-test-");
  let nats: NatsServer;
  let admin: NatsLink;
  let tasks: TasksApp;
  let reminders: RemindersApp;
  let now = Date.now();
  let taskClient: ReturnType<typeof createGrpcClient<typeof TaskService>>;
  let schedule: ReturnType<typeof createGrpcClient<typeof ReminderInternalService>>;
  const userId = randomUUID();

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger });
    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
      .setSubject(userId)
      .setIssuer(USER_TOKEN_ISSUER)
      .setAudience(USER_TOKEN_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime("10m")
      .sign(privateKey);
    const common = { GRPC_PORT: "0", TASKMESH_DATA_DIR: dir.path, NATS_URL: nats.url, TASKMESH_SERVICE_SECRET: SECRET };
    tasks = buildTasks(loadTasksConfig(common), {
      userTokens: createUserTokenVerifier(createLocalJWKSet({ keys: [jwk] })),
      logger,
    });
    const { grpcPort: tasksPort } = await tasks.listen();
    reminders = build(loadRemindersConfig(common), { logger, clock: () => now, relayPollIntervalMs: 100 });
    const { grpcPort } = await reminders.listen();
    taskClient = createGrpcClient(TaskService, {
      address: `127.0.0.1:${tasksPort}`,
      metadata: () => ({ authorization: `Bearer ${token}` }),
    });
    const tokens = new ServiceTokens(SECRET, "reminders-test");
    schedule = createGrpcClient(ReminderInternalService, {
      address: `127.0.0.1:${grpcPort}`,
      metadata: async () => ({ authorization: `Bearer ${await tokens.token()}` }),
    });
  });

  afterAll(async () => {
    taskClient?.close();
    schedule?.close();
    await reminders?.shutdown();
    await tasks?.shutdown();
    await admin?.close();
    await nats?.stop();
    dir.remove();
  });

  const timers = async () =>
    (await schedule.listSchedule({ userId })).timers.map((t) => [
      t.taskId,
      t.kind,
      timestampMs(t.fireTime as NonNullable<typeof t.fireTime>),
    ]);

  async function reminderEvents(): Promise<Envelope[]> {
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.REMINDERS.name).catch(() => undefined);
    const out: Envelope[] = [];
    for (let seq = 1; info && seq <= info.state.last_seq; seq++) {
      out.push(fromBinary(EnvelopeSchema, (await jsm.streams.getMessage(STREAMS.REMINDERS.name, { seq })).data));
    }
    return out;
  }

  it("follows a task through create, reschedule, reminder and completion", async () => {
    const due = Math.ceil((now + 120 * MIN) / 1000) * 1000;
    const { task } = await taskClient.createTask({
      task: {
        title: "Renew the passport",
        dueTime: timestampFromMs(due),
        timeZone: "America/New_York",
        reminderOffsets: [create(DurationSchema, { seconds: 3600n })],
      },
    });
    const id = task?.id as string;
    await waitFor("timers from task.created", async () => (await timers()).length === 2);
    expect(await timers()).toEqual([
      [id, TimerKind.REMINDER, due - 60 * MIN],
      [id, TimerKind.DUE, due],
    ]);

    await taskClient.updateTask({
      taskId: id,
      dueTime: timestampFromMs(due + 60 * MIN),
      title: "Renew both passports",
    });
    await waitFor("timers moved by task.updated", async () => (await timers())[1]?.[2] === due + 60 * MIN);
    expect(await timers()).toEqual([
      [id, TimerKind.REMINDER, due],
      [id, TimerKind.DUE, due + 60 * MIN],
    ]);

    now = due + 1;
    reminders.tick();
    const [reminder] = await waitFor("reminder.due", async () => {
      const es = await reminderEvents();
      return es.length === 1 ? es : undefined;
    });
    expect(reminder?.payload.case).toBe("reminderDue");
    expect(reminder?.payload.case === "reminderDue" && reminder.payload.value.title).toBe("Renew both passports");
    expect(reminder?.userId).toBe(userId);

    await taskClient.completeTask({ taskId: id });
    await waitFor("timers cancelled by task.completed", async () => (await timers()).length === 0);
    now = due + 2 * 60 * MIN;
    expect(reminders.tick()).toBe(0);
  });
});
