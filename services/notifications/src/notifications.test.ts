import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  Channel,
  type Envelope,
  EnvelopeSchema,
  ReminderDueSchema,
  TaskDueSchema,
  UserDeletedSchema,
} from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import {
  Kind,
  type Notification,
  NotificationInternalService,
  NotificationService,
} from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import {
  NotificationChannel,
  type PreferencesSchema,
  UserInternalService,
  UserService,
} from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  DependencyPolicy,
  ensureStreams,
  type GrpcClient,
  JWKS_PATH,
  NatsLink,
  newEvent,
  openDatabase,
  outboundPolicy,
  ServiceTokens,
  STREAMS,
} from "@taskmesh/platform";
import { freePort, type NatsServer, startNats, tempDir } from "@taskmesh/platform/testing";
import { build as buildUsers, loadUsersConfig, type UsersApp } from "@taskmesh/users/server";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import webpush from "web-push";
import { dueEventHandler, notificationIdFor } from "./due-events.js";
import { EmailSender } from "./email-sender.js";
import { LiveFeed } from "./live-feed.js";
import { startSmtp, startWebhookReceiver, waitFor } from "./notifications.test-util.js";
import { MIGRATIONS, NotificationsStore } from "./notifications-store.js";
import { PreferencesSource } from "./preferences.js";
import { PushSender } from "./push-sender.js";
import { build, emailMessageId, loadNotificationsConfig, type NotificationsApp } from "./server.js";
import { WebhookSender } from "./webhook-sender.js";

const logger = createLogger("notifications-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "notifications-test-secret-of-at-least-32-chars";
const WEBHOOK_SECRET = "webhook-secret-for-the-tests";
const HALF_OPEN_MS = 4000;

type PrefsInit = MessageInitShape<typeof PreferencesSchema>;
// Cheap scrypt: these tests are about notifications, not password cost.
const scrypt = { N: 1024, r: 8, p: 1 };

interface TestUser {
  id: string;
  email: string;
  token: string;
  auth: { headers: { authorization: string } };
  hookPath: string;
}

describe("notifications service (real nats-server, users, SMTP server and webhook receiver)", () => {
  const dir = tempDir("notifications-test-");
  let nats: NatsServer;
  let admin: NatsLink;
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let usersEnv: Record<string, string>;
  let users: UsersApp | undefined;
  let usersClient: GrpcClient<typeof UserService>;
  let app: NotificationsApp;
  let dbPath: string;
  let inbox: GrpcClient<typeof NotificationService>;
  let internal: GrpcClient<typeof NotificationInternalService>;
  /** The service's clock: real time unless a test pins it. */
  let pinnedNow: number | undefined;
  const clients: { close(): void }[] = [];

  async function startUsers(): Promise<void> {
    users = buildUsers(loadUsersConfig(usersEnv), { logger, scrypt });
    await users.listen();
  }

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger, reconnectTimeWaitMs: 100 });
    await ensureStreams(await admin.jetstreamManager(), [STREAMS.REMINDERS, STREAMS.USERS, STREAMS.NOTIFICATIONS]);
    smtp = await startSmtp();
    hooks = await startWebhookReceiver(WEBHOOK_SECRET);

    // Fixed ports, so users can be stopped and started again at the same address.
    usersEnv = {
      GRPC_PORT: String(await freePort()),
      JWKS_PORT: String(await freePort()),
      TASKMESH_DATA_DIR: dir.path,
      TASKMESH_SERVICE_SECRET: SECRET,
      NATS_URL: nats.url,
      LOG_LEVEL: "silent",
      WEBHOOK_ALLOWED_NETWORKS: "127.0.0.1/32", // the test's webhook receiver is local
    };
    await startUsers();
    usersClient = createGrpcClient(UserService, { address: `127.0.0.1:${usersEnv.GRPC_PORT}` });
    clients.push(usersClient);

    const config = loadNotificationsConfig({
      GRPC_PORT: "0",
      DB_PATH: join(dir.path, "notifications.db"),
      NATS_URL: nats.url,
      JWKS_URL: `http://127.0.0.1:${usersEnv.JWKS_PORT}${JWKS_PATH}`,
      USERS_ADDR: `127.0.0.1:${usersEnv.GRPC_PORT}`,
      USERS_TIMEOUT_MS: "1500",
      BREAKER_FAILURES: "3",
      BREAKER_HALF_OPEN_MS: String(HALF_OPEN_MS),
      SMTP_URL: smtp.url,
      WEBHOOK_SECRET,
      DELIVERY_ATTEMPTS: "4",
      DELIVERY_TIMEOUT_MS: "3000",
      WEBHOOK_ALLOWED_NETWORKS: "127.0.0.1/32",
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    });
    dbPath = config.dbPath;
    app = build(config, {
      logger,
      clock: () => pinnedNow ?? Date.now(),
      deliveryBackoff: { initialMs: 20, maxMs: 100 },
      retryBackoff: { initialMs: 100, maxMs: 500 },
      consumer: { ackWaitMs: 5000, maxDeliver: 20 },
    });
    const { grpcPort } = await app.listen();
    inbox = createGrpcClient(NotificationService, { address: `127.0.0.1:${grpcPort}` });
    const tokens = new ServiceTokens(SECRET, "users");
    internal = createGrpcClient(NotificationInternalService, {
      address: `127.0.0.1:${grpcPort}`,
      metadata: async () => ({ authorization: `Bearer ${await tokens.token()}` }),
    });
    clients.push(inbox, internal);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await app?.shutdown();
    await users?.shutdown();
    await smtp?.stop();
    await hooks?.stop();
    await admin?.close();
    await nats?.stop();
    dir.remove();
  });

  let n = 0;
  /** A real account: registered and logged in through users, with `prefs` set through UpdatePreferences. */
  async function user(prefs: (u: { id: string; hookPath: string }) => PrefsInit = () => ({})) {
    const email = `user${++n}-${Date.now()}@example.com`;
    const password = "a good password";
    const reg = await usersClient.register({ email, password });
    const login = await usersClient.login({ email, password });
    const id = reg.user?.id ?? "";
    const hookPath = `/hooks/${id}`;
    const auth = { headers: { authorization: `Bearer ${login.accessToken}` } };
    await usersClient.updatePreferences({ preferences: prefs({ id, hookPath }) }, auth);
    return { id, email, token: login.accessToken, auth, hookPath } satisfies TestUser;
  }

  const everyChannel = ({ hookPath }: { hookPath: string }): PrefsInit => ({
    channels: [NotificationChannel.IN_APP, NotificationChannel.EMAIL, NotificationChannel.WEBHOOK],
    webhookUrl: hooks.url(hookPath),
  });

  function reminderDue(userId: string, title = "water the plants"): Envelope {
    const taskId = randomUUID();
    return newEvent({
      userId,
      aggregateId: taskId,
      payload: {
        case: "reminderDue",
        value: create(ReminderDueSchema, {
          taskId,
          title,
          dueTime: timestampFromMs(Date.parse("2030-06-01T09:00:00Z")),
          offsetSeconds: 900n,
          fireTime: timestampFromMs(Date.parse("2030-06-01T08:45:00Z")),
          timeZone: "Europe/Paris",
        }),
      },
    });
  }

  /** Publishes like the reminders relay (Nats-Msg-Id = event id); another msgId gets a copy past JetStream's de-duplication. */
  async function publish(event: Envelope, msgId = event.id): Promise<void> {
    const js = await admin.jetstream();
    await js.publish(`taskmesh.${event.type}`, toBinary(EnvelopeSchema, event), { msgID: msgId });
  }

  /** Reads the service's database over a separate read-only connection. */
  function query<T>(sql: string, ...params: unknown[]): T[] {
    const db = new Database(dbPath, { readonly: true });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  }

  /** Waits until the service has applied `eventId` (its inbox row committed). */
  async function handled(eventId: string): Promise<void> {
    await waitFor(
      `event ${eventId} to be handled`,
      () => query("SELECT 1 FROM inbox WHERE event_id = ?", eventId).length,
    );
  }

  async function notificationSentFor(sourceEventId: string) {
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.NOTIFICATIONS.name);
    const out: { subject: string; msgId: string | undefined; envelope: Envelope }[] = [];
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.NOTIFICATIONS.name, { seq });
      const envelope = fromBinary(EnvelopeSchema, m.data);
      if (envelope.payload.case === "notificationSent" && envelope.payload.value.sourceEventId === sourceEventId)
        out.push({ subject: m.subject, msgId: m.header?.get("Nats-Msg-Id"), envelope });
    }
    return out;
  }

  const emailsFor = (eventId: string) => smtp.messages.filter((m) => m.messageId === emailMessageId(eventId));
  const hitsOn = (path: string) => hooks.hits.filter((h) => h.path === path);
  const list = async (u: TestUser, req: { unreadOnly?: boolean; pageSize?: number; pageToken?: string } = {}) =>
    await inbox.listNotifications(req, u.auth);

  async function failure(p: Promise<unknown>): Promise<ConnectError> {
    try {
      await p;
    } catch (e) {
      return ConnectError.from(e);
    }
    throw new Error("expected the call to fail");
  }

  it("delivers a reminder in-app, by email and by signed webhook, and publishes notification.sent per channel", async () => {
    const u = await user(everyChannel);
    const ev = reminderDue(u.id, "pay the rent");
    await publish(ev);
    await handled(ev.id);

    const { notifications, unreadCount } = await list(u);
    expect(unreadCount).toBe(1n);
    expect(notifications).toHaveLength(1);
    const [note] = notifications as [Notification];
    expect(note).toMatchObject({
      id: notificationIdFor(ev.id),
      kind: Kind.REMINDER,
      taskId: ev.aggregateId,
      title: "Reminder: pay the rent",
    });
    // The due time on the user's clock (users' default zone is UTC), not the task's (Paris).
    expect(note.body).toBe('"pay the rent" is due Sat, 1 Jun 2030, 09:00 UTC.');
    expect(note.readTime).toBeUndefined();

    const [mail, ...moreMail] = emailsFor(ev.id);
    expect(moreMail).toHaveLength(0);
    expect(mail?.to).toEqual([u.email]);
    expect(mail?.subject).toBe("Reminder: pay the rent");

    const [hit, ...moreHits] = hitsOn(u.hookPath);
    expect(moreHits).toHaveLength(0);
    expect(hit?.signatureValid).toBe(true);
    expect(hit?.headers["idempotency-key"]).toBe(`${ev.id}:webhook`);
    expect(hit?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(hit?.body ?? "{}")).toMatchObject({
      type: "reminder.due",
      notification_id: note.id,
      event_id: ev.id,
      task_id: ev.aggregateId,
      title: "Reminder: pay the rent",
      due_time: "2030-06-01T09:00:00.000Z",
    });

    const sent = await waitFor("three notification.sent events", async () => {
      const s = await notificationSentFor(ev.id);
      return s.length >= 3 ? s : undefined;
    });
    expect(sent).toHaveLength(3);
    expect(sent.map((s) => s.subject)).toEqual(Array(3).fill("taskmesh.notification.sent"));
    for (const s of sent) {
      expect(s.msgId).toBe(s.envelope.id);
      expect(s.envelope).toMatchObject({ type: "notification.sent", userId: u.id, aggregateId: note.id });
      expect(s.envelope.payload.value).toMatchObject({ notificationId: note.id, taskId: ev.aggregateId });
    }
    const channels = sent.map((s) =>
      s.envelope.payload.case === "notificationSent" ? s.envelope.payload.value.channel : 0,
    );
    expect(channels.sort()).toEqual([Channel.IN_APP, Channel.EMAIL, Channel.WEBHOOK]);

    const log = query<{ channel: string; status: string; attempts: number }>(
      "SELECT channel, status, attempts FROM deliveries WHERE event_id = ? ORDER BY channel",
      ev.id,
    );
    expect(log).toEqual([
      { channel: "email", status: "sent", attempts: 1 },
      { channel: "in_app", status: "sent", attempts: 1 },
      { channel: "webhook", status: "sent", attempts: 1 },
    ]);
  });

  it("delivers task.due as a 'due' notification", async () => {
    const u = await user();
    const taskId = randomUUID();
    const ev = newEvent({
      userId: u.id,
      aggregateId: taskId,
      payload: {
        case: "taskDue",
        value: create(TaskDueSchema, {
          taskId,
          title: "file taxes",
          dueTime: timestampFromMs(Date.parse("2030-04-15T16:00:00Z")),
          timeZone: "America/New_York",
        }),
      },
    });
    await publish(ev);
    await handled(ev.id);
    const { notifications } = await list(u);
    expect(notifications.map((x) => [x.kind, x.title, x.taskId])).toEqual([[Kind.DUE, "Due now: file taxes", taskId]]);
    // No email or webhook chosen (empty channels = in-app only).
    expect(emailsFor(ev.id)).toHaveLength(0);
  });

  it("applies a redelivered event once: no second row, email, webhook or notification.sent", async () => {
    const u = await user(everyChannel);
    const ev = reminderDue(u.id);
    await publish(ev);
    await handled(ev.id);
    const before = app.stats().consumers.reminderDue.duplicates;
    // The same event again, past JetStream's de-duplication (as after a lost ack or a relay crash).
    await publish(ev, `${ev.id}:again`);
    await waitFor("the copy to be acked as a duplicate", () => app.stats().consumers.reminderDue.duplicates > before);

    expect((await list(u)).notifications).toHaveLength(1);
    expect(emailsFor(ev.id)).toHaveLength(1);
    expect(hitsOn(u.hookPath)).toHaveLength(1);
    await waitFor("notification.sent", async () => (await notificationSentFor(ev.id)).length >= 3);
    expect(await notificationSentFor(ev.id)).toHaveLength(3);
  });

  it("does not send again when a successor process repeats the delivery the crashed one had made before its commit", async () => {
    // A second handler on the same database, as a restarted process would be: its `external`
    // runs again for an event whose email and webhook the first process sent but never committed.
    const u = await user(everyChannel);
    const store = new NotificationsStore(openDatabase(dbPath, MIGRATIONS));
    const usersInternal = createGrpcClient(UserInternalService, {
      address: `127.0.0.1:${usersEnv.GRPC_PORT}`,
      metadata: async () => ({ authorization: `Bearer ${await new ServiceTokens(SECRET, "notifications").token()}` }),
    });
    const sending = { timeoutMs: 3000, attempts: 2, backoff: { initialMs: 10, maxMs: 20 } };
    const email = new EmailSender({ smtpUrl: smtp.url, from: "t <t@example.com>", ...sending });
    const handler = dueEventHandler({
      store,
      preferences: new PreferencesSource({
        client: usersInternal,
        policy: new DependencyPolicy("users", { logger }),
        logger,
        timeoutMs: 2000,
      }),
      email,
      webhook: new WebhookSender({ secret: WEBHOOK_SECRET, ...sending, policy: outboundPolicy("127.0.0.1/32") }),
      // Not chosen by this test's users: never called.
      push: new PushSender({ vapid: { ...webpush.generateVAPIDKeys(), subject: "mailto:t@example.com" }, ...sending }),
      feed: new LiveFeed(),
      clock: Date.now,
      logger,
      stopping: new AbortController().signal,
    });
    try {
      const ev = reminderDue(u.id);
      const ctx = {
        eventId: ev.id,
        consumer: "t",
        subject: "taskmesh.reminder.due",
        deliveryCount: 1,
        traceparent: undefined,
      };
      const first = await handler.external?.(ev, ctx);
      const second = await handler.external?.(ev, { ...ctx, deliveryCount: 2 });
      expect(emailsFor(ev.id)).toHaveLength(1);
      expect(hitsOn(u.hookPath)).toHaveLength(1);
      // Both runs report the channels as sent (from the delivery log), so the one commit publishes them.
      expect(second).toEqual(first);
      expect(first).toMatchObject({
        kind: "deliver",
        external: [
          { channel: "email", status: "sent" },
          { channel: "webhook", status: "sent" },
        ],
      });
    } finally {
      usersInternal.close();
      email.close();
      store.close();
    }
  });

  it("pushes a new notification live on the owner's watch stream only, and ends the stream when the client cancels", async () => {
    const a = await user();
    const b = await user();
    const aborts = [new AbortController(), new AbortController()] as const;
    const streamA = inbox.watchNotifications({}, { ...a.auth, signal: aborts[0].signal })[Symbol.asyncIterator]();
    const streamB = inbox.watchNotifications({}, { ...b.auth, signal: aborts[1].signal })[Symbol.asyncIterator]();
    const nextA = streamA.next();
    const nextB = streamB.next();
    // Both calls have to reach the server before anything is published (the stream shows new ones only).
    await waitFor("both streams to be open", () => app.stats().watchers === 2);

    const forA = reminderDue(a.id, "for a");
    await publish(forA);
    const gotA = await nextA;
    expect(gotA.done).toBe(false);
    expect(gotA.value?.notification).toMatchObject({ id: notificationIdFor(forA.id), title: "Reminder: for a" });

    // B's stream has not seen A's notification: its first message is B's own, published after A's arrived.
    const forB = reminderDue(b.id, "for b");
    await publish(forB);
    const gotB = await nextB;
    expect(gotB.value?.notification?.id).toBe(notificationIdFor(forB.id));

    aborts[0].abort();
    aborts[1].abort();
    await expect(streamA.next()).rejects.toMatchObject({ code: Code.Canceled });
    await waitFor("the server to drop both streams", () => app.stats().watchers === 0);
  });

  it("rejects a watch without a valid token", async () => {
    const stream = inbox.watchNotifications({}, { headers: { authorization: "Bearer not-a-token" } });
    const err = await failure(
      (async () => {
        for await (const _ of stream) break;
      })(),
    );
    expect(err.code).toBe(Code.Unauthenticated);
  });

  it("during quiet hours (22:00–07:00 in the user's zone) delivers in-app only, skipping email and webhook", async () => {
    const u = await user(
      (x): PrefsInit => ({
        channels: [NotificationChannel.IN_APP, NotificationChannel.EMAIL, NotificationChannel.WEBHOOK],
        webhookUrl: hooks.url(x.hookPath),
        timeZone: "Asia/Tokyo",
        quietHours: { startMinute: 22 * 60, endMinute: 7 * 60 },
      }),
    );
    pinnedNow = Date.parse("2030-01-15T14:30:00Z"); // 23:30 in Tokyo
    try {
      const ev = reminderDue(u.id);
      await publish(ev);
      await handled(ev.id);
      const { notifications } = await list(u);
      expect(notifications.map((x) => x.id)).toEqual([notificationIdFor(ev.id)]);
      expect(notifications[0]?.body).toContain("18:00 GMT+9"); // 09:00Z on the user's (Tokyo) clock
      expect(emailsFor(ev.id)).toHaveLength(0);
      expect(hitsOn(u.hookPath)).toHaveLength(0);
      expect(
        query("SELECT channel, status, detail FROM deliveries WHERE event_id = ? ORDER BY channel", ev.id),
      ).toEqual([
        { channel: "email", status: "skipped", detail: "quiet hours" },
        { channel: "in_app", status: "sent", detail: null },
        { channel: "webhook", status: "skipped", detail: "quiet hours" },
      ]);

      // 07:30 in Tokyo: outside the window, every channel again.
      pinnedNow = Date.parse("2030-01-15T22:30:00Z");
      const later = reminderDue(u.id);
      await publish(later);
      await handled(later.id);
      expect(emailsFor(later.id)).toHaveLength(1);
      expect(hitsOn(u.hookPath)).toHaveLength(1);
    } finally {
      pinnedNow = undefined;
    }
  });

  it("retries a webhook answered 500 twice, then delivers it once; a 4xx is not retried", async () => {
    const u = await user(({ hookPath }) => ({
      channels: [NotificationChannel.WEBHOOK],
      webhookUrl: hooks.url(hookPath),
    }));
    hooks.script(u.hookPath, [500, 500]);
    const ev = reminderDue(u.id);
    await publish(ev);
    await handled(ev.id);
    const hits = hitsOn(u.hookPath);
    expect(hits.map((h) => h.status)).toEqual([500, 500, 200]);
    // Every attempt is the same request: same key, same signed body.
    expect(new Set(hits.map((h) => h.headers["idempotency-key"]))).toEqual(new Set([`${ev.id}:webhook`]));
    expect(new Set(hits.map((h) => h.body)).size).toBe(1);
    expect(hits.every((h) => h.signatureValid)).toBe(true);
    expect(query("SELECT status, attempts FROM deliveries WHERE event_id = ? AND channel = 'webhook'", ev.id)).toEqual([
      { status: "sent", attempts: 3 },
    ]);
    await waitFor("notification.sent", async () => (await notificationSentFor(ev.id)).length >= 1);
    const sent = await notificationSentFor(ev.id);
    // The user chose webhook only, and it was delivered: no in-app row, one notification.sent.
    expect(
      sent.map((s) => (s.envelope.payload.case === "notificationSent" ? s.envelope.payload.value.channel : 0)),
    ).toEqual([Channel.WEBHOOK]);
    expect((await list(u)).notifications).toHaveLength(0);

    hooks.script(u.hookPath, [410]);
    const gone = reminderDue(u.id);
    await publish(gone);
    await handled(gone.id);
    expect(hitsOn(u.hookPath).map((h) => h.status)).toEqual([500, 500, 200, 410]);
    expect(
      query("SELECT status, attempts, detail FROM deliveries WHERE event_id = ? AND channel = 'webhook'", gone.id),
    ).toEqual([{ status: "failed", attempts: 1, detail: `POST ${hooks.url(u.hookPath)} answered 410` }]);
    // Nothing delivered it on a chosen channel, so it is kept in-app rather than lost.
    expect((await list(u)).notifications.map((x) => x.id)).toEqual([notificationIdFor(gone.id)]);
  });

  it("lists newest first with cursor paging and unread_only, and marks the caller's notifications read", async () => {
    const u = await user();
    const events = [];
    for (let i = 0; i < 5; i++) {
      const ev = reminderDue(u.id, `task ${i}`);
      await publish(ev);
      await handled(ev.id);
      events.push(ev);
    }
    const p1 = await list(u, { pageSize: 2 });
    expect(p1.notifications.map((x) => x.title)).toEqual(["Reminder: task 4", "Reminder: task 3"]);
    expect(p1.unreadCount).toBe(5n);
    const p2 = await list(u, { pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.notifications.map((x) => x.title)).toEqual(["Reminder: task 2", "Reminder: task 1"]);
    const p3 = await list(u, { pageSize: 2, pageToken: p2.nextPageToken });
    expect(p3.notifications.map((x) => x.title)).toEqual(["Reminder: task 0"]);
    expect(p3.nextPageToken).toBe("");

    const ids = p1.notifications.map((x) => x.id);
    expect((await inbox.markRead({ notificationIds: ids }, u.auth)).unreadCount).toBe(3n);
    // Idempotent: marking again changes nothing.
    expect((await inbox.markRead({ notificationIds: ids }, u.auth)).unreadCount).toBe(3n);
    const unread = await list(u, { unreadOnly: true });
    expect(unread.notifications.map((x) => x.title)).toEqual([
      "Reminder: task 2",
      "Reminder: task 1",
      "Reminder: task 0",
    ]);
    const all = await list(u);
    expect(
      all.notifications
        .filter((x) => x.readTime)
        .map((x) => x.id)
        .sort(),
    ).toEqual([...ids].sort());

    expect((await failure(list(u, { pageToken: "bm9wZQ" }))).code).toBe(Code.InvalidArgument);
  });

  it("answers NOT_FOUND to MarkRead of another user's notification and changes nothing", async () => {
    const owner = await user();
    const other = await user();
    const ev = reminderDue(owner.id);
    await publish(ev);
    await handled(ev.id);
    const mine = reminderDue(other.id);
    await publish(mine);
    await handled(mine.id);

    const err = await failure(
      inbox.markRead({ notificationIds: [notificationIdFor(mine.id), notificationIdFor(ev.id)] }, other.auth),
    );
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain(notificationIdFor(ev.id));
    // All or nothing: not even the caller's own id was marked, and the owner's stays unread.
    expect((await list(other, { unreadOnly: true })).notifications).toHaveLength(1);
    expect((await list(owner, { unreadOnly: true })).notifications).toHaveLength(1);
    // Nor can the other user see it.
    expect((await list(other)).notifications.map((x) => x.id)).toEqual([notificationIdFor(mine.id)]);
    expect((await failure(inbox.markRead({ notificationIds: [randomUUID()] }, owner.auth))).code).toBe(Code.NotFound);
  });

  it("drops an event for a user users does not know (deleted)", async () => {
    const before = app.stats().preferences.gone;
    const ev = reminderDue(randomUUID());
    await publish(ev);
    await handled(ev.id);
    expect(app.stats().preferences.gone).toBe(before + 1);
    expect(query("SELECT 1 FROM notifications WHERE source_event_id = ?", ev.id)).toHaveLength(0);
  });

  it("empties a user's inbox and delivery log on user.deleted, and through the internal PurgeUser", async () => {
    const a = await user(everyChannel);
    const b = await user();
    for (const u of [a, a, b]) {
      const ev = reminderDue(u.id);
      await publish(ev);
      await handled(ev.id);
    }
    expect(query("SELECT 1 FROM deliveries WHERE user_id = ?", a.id).length).toBeGreaterThan(0);

    const deleted = newEvent({
      userId: a.id,
      aggregateId: a.id,
      payload: { case: "userDeleted", value: create(UserDeletedSchema, { userId: a.id }) },
    });
    await publish(deleted);
    await handled(deleted.id);
    expect((await list(a)).notifications).toHaveLength(0);
    expect(query("SELECT 1 FROM deliveries WHERE user_id = ?", a.id)).toHaveLength(0);
    expect((await list(b)).notifications).toHaveLength(1);

    expect((await internal.purgeUser({ userId: b.id })).deletedCount).toBe(1n);
    expect((await list(b)).notifications).toHaveLength(0);
    expect((await internal.purgeUser({ userId: b.id })).deletedCount).toBe(0n);
    // A user token is not a service token.
    const err = await failure(internal.purgeUser({ userId: b.id }, b.auth));
    expect(err.code).toBe(Code.Unauthenticated);
  });

  it("falls back to in-app only while users is down, counts it, opens the breaker, and recovers after it half-opens", async () => {
    const u = await user(everyChannel);
    const start = app.stats().preferences;
    expect(start.breaker).toBe("closed");
    await users?.shutdown();
    users = undefined;

    // Three failures in a row (BREAKER_FAILURES=3) open the breaker.
    const down = [reminderDue(u.id, "down 1"), reminderDue(u.id, "down 2"), reminderDue(u.id, "down 3")];
    for (const ev of down) {
      await publish(ev);
      await handled(ev.id);
    }
    let stats = app.stats().preferences;
    expect(stats.fallbacks).toBe(start.fallbacks + 3);
    expect(stats.breaker).toBe("open");
    expect((await list(u)).notifications).toHaveLength(3);
    for (const ev of down) {
      expect(emailsFor(ev.id)).toHaveLength(0);
      expect(hitsOn(u.hookPath)).toHaveLength(0);
    }

    // users is back, but the open breaker answers at once without calling it: still the fallback.
    await startUsers();
    const whileOpen = reminderDue(u.id, "while open");
    await publish(whileOpen);
    await handled(whileOpen.id);
    stats = app.stats().preferences;
    expect(stats.fallbacks).toBe(start.fallbacks + 4);
    expect(stats.found).toBe(start.found);
    expect(stats.lastFallback).toMatch(/circuit open/);
    expect(emailsFor(whileOpen.id)).toHaveLength(0);

    // After the half-open delay one trial call reaches users, succeeds, and closes the breaker.
    await new Promise((r) => setTimeout(r, HALF_OPEN_MS + 300));
    const after = reminderDue(u.id, "after");
    await publish(after);
    await handled(after.id);
    stats = app.stats().preferences;
    expect(stats.breaker).toBe("closed");
    expect(stats.found).toBe(start.found + 1);
    expect(emailsFor(after.id)).toHaveLength(1);
    expect(hitsOn(u.hookPath)).toHaveLength(1);
  });

  it("ends open watch streams cleanly when the server shuts down", async () => {
    const u = await user();
    // A second instance with its own database; its NATS is unreachable, which the inbox API does not need.
    const other = build(
      loadNotificationsConfig({
        GRPC_PORT: "0",
        DB_PATH: join(dir.path, "second.db"),
        NATS_URL: `nats://127.0.0.1:${await freePort()}`,
        JWKS_URL: `http://127.0.0.1:${usersEnv.JWKS_PORT}${JWKS_PATH}`,
        USERS_ADDR: `127.0.0.1:${usersEnv.GRPC_PORT}`,
        TASKMESH_SERVICE_SECRET: SECRET,
        LOG_LEVEL: "silent",
      }),
      { logger },
    );
    const { grpcPort } = await other.listen();
    const client = createGrpcClient(NotificationService, { address: `127.0.0.1:${grpcPort}` });
    try {
      const stream = client.watchNotifications({}, u.auth)[Symbol.asyncIterator]();
      const next = stream.next();
      await waitFor("the stream to be open", () => other.stats().watchers === 1);
      await other.shutdown();
      expect(await next).toMatchObject({ done: true });
      expect(other.stats().watchers).toBe(0);
    } finally {
      client.close();
      await other.shutdown();
    }
  });
});
