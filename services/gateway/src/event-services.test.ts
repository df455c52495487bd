import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { type AnalyticsApp, build as buildAnalytics, loadAnalyticsConfig } from "@taskmesh/analytics/server";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { EnvelopeSchema, ReminderDueSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { Kind, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  build as buildNotifications,
  loadNotificationsConfig,
  type NotificationsApp,
} from "@taskmesh/notifications/server";
import { ensureStreams, NatsLink, newEvent, STREAMS } from "@taskmesh/platform";
import { type NatsServer, startNats } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadGatewayConfig } from "./config.js";
import {
  type Backends,
  bearer,
  errorOf,
  logger,
  newUser,
  SECRET,
  startBackends,
  waitFor,
} from "./gateway.test-util.js";
import { build, type GatewayApp } from "./server.js";

// The gateway in front of the REAL notifications and analytics services (in-process, temp SQLite,
// a real nats-server), with the real users and tasks: tasks' events feed analytics over NATS; a
// reminder.due event (published here as the reminders service would) makes notifications
// deliver in-app, live on the watch stream the caller holds open through the gateway.

let nats: NatsServer;
let admin: NatsLink;
let backends: Backends;
let notifications: NotificationsApp;
let analytics: AnalyticsApp;
let gateway: GatewayApp;
let baseUrl: string;
let transport: Transport;

beforeAll(async () => {
  nats = await startNats();
  admin = new NatsLink({ servers: nats.url, name: "gateway-test-admin", logger, reconnectTimeWaitMs: 100 });
  // reminder.due lives in the REMINDERS stream, which the reminders service (not started here) declares.
  await ensureStreams(await admin.jetstreamManager(), [STREAMS.REMINDERS, STREAMS.USERS, STREAMS.TASKS]);
  backends = await startBackends("gateway-events-test-", { natsUrl: nats.url });
  const common = {
    GRPC_PORT: "0",
    NATS_URL: nats.url,
    JWKS_URL: backends.jwksUrl,
    TASKMESH_SERVICE_SECRET: SECRET,
    LOG_LEVEL: "silent",
  };
  notifications = buildNotifications(
    loadNotificationsConfig({
      ...common,
      DB_PATH: join(backends.dataDir, "notifications.db"),
      USERS_ADDR: backends.env.USERS_ADDR,
    }),
    { logger },
  );
  const n = await notifications.listen();
  analytics = buildAnalytics(loadAnalyticsConfig({ ...common, DB_PATH: join(backends.dataDir, "analytics.db") }), {
    logger,
  });
  const a = await analytics.listen();
  gateway = build(
    loadGatewayConfig({
      ...backends.env,
      NOTIFICATIONS_ADDR: `127.0.0.1:${n.grpcPort}`,
      ANALYTICS_ADDR: `127.0.0.1:${a.grpcPort}`,
    }),
    { logger },
  );
  baseUrl = `http://127.0.0.1:${(await gateway.listen()).grpcPort}`;
  transport = createGrpcTransport({ baseUrl });
});

afterAll(async () => {
  await gateway?.shutdown();
  await analytics?.shutdown();
  await notifications?.shutdown();
  await backends?.stop();
  await admin?.close();
  await nats?.stop();
});

/** Publishes a reminder.due for `userId` the way the reminders relay does (Nats-Msg-Id = event id). */
async function publishReminderDue(userId: string, title: string) {
  const taskId = randomUUID();
  const event = newEvent({
    userId,
    aggregateId: taskId,
    payload: {
      case: "reminderDue",
      value: create(ReminderDueSchema, {
        taskId,
        title,
        dueTime: timestampFromMs(Date.now() + 15 * 60_000),
        offsetSeconds: 900n,
        fireTime: timestampFromMs(Date.now()),
        timeZone: "Europe/Paris",
      }),
    },
  });
  const js = await admin.jetstream();
  await js.publish(`taskmesh.${event.type}`, toBinary(EnvelopeSchema, event), { msgID: event.id });
  return taskId;
}

describe("NotificationService through the gateway (the real notifications service)", () => {
  it("streams a new in-app notification live to the caller's watch, lists it in the caller's inbox only, and marks it read", async () => {
    const inbox = createClient(NotificationService, transport);
    const me = await newUser(transport);
    const other = await newUser(transport);

    const abort = new AbortController();
    const watch = inbox.watchNotifications({}, { ...bearer(me.token), signal: abort.signal })[Symbol.asyncIterator]();
    const first = watch.next();
    await waitFor("the watch to reach notifications", () => notifications.stats().watchers === 1);

    const taskId = await publishReminderDue(me.id, "water the plants");
    const live = await first;
    expect(live.done).toBe(false);
    const n = live.value?.notification;
    expect(n).toMatchObject({ kind: Kind.REMINDER, taskId });
    expect(n?.title).toContain("water the plants");

    const listed = await inbox.listNotifications({}, bearer(me.token));
    expect(listed.notifications.map((x) => x.id)).toEqual([n?.id]);
    expect(listed.unreadCount).toBe(1n);
    expect((await inbox.listNotifications({}, bearer(other.token))).notifications).toEqual([]);

    // Another user's notification is NOT_FOUND for them: the backend's code comes back unchanged.
    const foreign = await errorOf(inbox.markRead({ notificationIds: [n?.id ?? ""] }, bearer(other.token)));
    expect(foreign.code).toBe(Code.NotFound);
    expect((await inbox.markRead({ notificationIds: [n?.id ?? ""] }, bearer(me.token))).unreadCount).toBe(0n);
    expect((await inbox.listNotifications({ unreadOnly: true }, bearer(me.token))).notifications).toEqual([]);

    // The caller hangs up: the backend's stream ends too.
    abort.abort();
    await watch.next().catch((e: unknown) => expect(ConnectError.from(e).code).toBe(Code.Canceled));
    await waitFor("notifications to see the watch end", () => notifications.stats().watchers === 0);
  });

  it("answers Connect JSON over HTTP/1.1 too, and checks the input at the backend (INVALID_ARGUMENT naming the field)", async () => {
    const me = await newUser(transport);
    const json = createClient(NotificationService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
    expect((await json.listNotifications({ pageSize: 5 }, bearer(me.token))).unreadCount).toBe(0n);
    const bad = await errorOf(json.markRead({ notificationIds: ["not-a-uuid"] }, bearer(me.token)));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toContain("notification_ids");
  });
});

describe("AnalyticsService through the gateway (the real analytics service, fed by tasks' events)", () => {
  it("reports the caller's created and completed counts and finds the caller's tasks by a word of the title", async () => {
    const tasks = createClient(TaskService, transport);
    const stats = createClient(AnalyticsService, transport);
    const me = await newUser(transport);
    const other = await newUser(transport);

    const milk = (await tasks.createTask({ task: { title: "Buy oat milk" } }, bearer(me.token))).task;
    await tasks.createTask({ task: { title: "Book the dentist" } }, bearer(me.token));
    await tasks.createTask({ task: { title: "Buy oat flour" } }, bearer(other.token));
    await tasks.completeTask({ taskId: milk?.id ?? "" }, bearer(me.token));

    const mine = await waitFor("analytics to fold the events", async () => {
      const s = (await stats.getStats({}, bearer(me.token))).stats;
      return s && s.createdCount === 2n && s.completedCount === 1n ? s : undefined;
    });
    expect(mine.openCount).toBe(1n);
    expect(mine.completionRate).toBeCloseTo(0.5);

    const hits = (await stats.searchTasks({ query: "oat" }, bearer(me.token))).hits;
    expect(hits.map((h) => [h.taskId, h.completed])).toEqual([[milk?.id, true]]);
    const theirs = await waitFor("the other user's task to be indexed", async () => {
      const h = (await stats.searchTasks({ query: "oat" }, bearer(other.token))).hits;
      return h.length > 0 ? h : undefined;
    });
    expect(theirs.map((h) => h.title)).toEqual(["Buy oat flour"]);

    const bad = await errorOf(stats.searchTasks({ query: "" }, bearer(me.token)));
    expect(bad.code).toBe(Code.InvalidArgument);
  });
});

describe("the gateway with every public service behind it", () => {
  it("reports each forwarded service's readiness from its backend", async () => {
    const health = createClient(Health, transport);
    for (const service of [
      "taskmesh.notifications.v1.NotificationService",
      "taskmesh.analytics.v1.AnalyticsService",
      "dependency.notifications",
      "dependency.analytics",
    ])
      expect((await health.check({ service })).status, service).toBe(Status.SERVING);
  });
});
