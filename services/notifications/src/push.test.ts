import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Envelope, EnvelopeSchema, ReminderDueSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { NotificationChannel, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  ensureStreams,
  type GrpcClient,
  JWKS_PATH,
  NatsLink,
  newEvent,
  openDatabase,
  STREAMS,
} from "@taskmesh/platform";
import {
  freePort,
  type NatsServer,
  pushDevice,
  startNats,
  startPushReceiver,
  tempDir,
} from "@taskmesh/platform/testing";
import { build as buildUsers, loadUsersConfig, type UsersApp } from "@taskmesh/users/server";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { notificationIdFor } from "./due-events.js";
import { waitFor } from "./notifications.test-util.js";
import { MIGRATIONS, NotificationsStore } from "./notifications-store.js";
import { build, loadNotificationsConfig, type NotificationsApp } from "./server.js";
import { VAPID_FILE } from "./vapid-keys.js";

const SECRET = "test-service-secret-of-at-least-32-chars";
const logger = createLogger("push-test", { level: "silent" });

describe("Web Push (real nats-server, users, and a local push service checking VAPID and decrypting)", () => {
  const dir = tempDir("push-test-");
  let nats: NatsServer;
  let admin: NatsLink;
  let users: UsersApp;
  let usersClient: GrpcClient<typeof UserService>;
  let app: NotificationsApp;
  let inbox: GrpcClient<typeof NotificationService>;
  let receiver: Awaited<ReturnType<typeof startPushReceiver>>;
  let dbPath: string;

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger, reconnectTimeWaitMs: 100 });
    await ensureStreams(await admin.jetstreamManager(), [STREAMS.REMINDERS, STREAMS.USERS, STREAMS.NOTIFICATIONS]);
    receiver = await startPushReceiver();
    const usersEnv = {
      GRPC_PORT: String(await freePort()),
      JWKS_PORT: String(await freePort()),
      TASKMESH_DATA_DIR: dir.path,
      TASKMESH_SERVICE_SECRET: SECRET,
      NATS_URL: nats.url,
      LOG_LEVEL: "silent",
    };
    users = buildUsers(loadUsersConfig(usersEnv), { logger, scrypt: { N: 1024, r: 8, p: 1 } });
    await users.listen();
    usersClient = createGrpcClient(UserService, { address: `127.0.0.1:${usersEnv.GRPC_PORT}` });
    const config = loadNotificationsConfig({
      GRPC_PORT: "0",
      DB_PATH: join(dir.path, "notifications.db"),
      NATS_URL: nats.url,
      JWKS_URL: `http://127.0.0.1:${usersEnv.JWKS_PORT}${JWKS_PATH}`,
      USERS_ADDR: `127.0.0.1:${usersEnv.GRPC_PORT}`,
      DELIVERY_ATTEMPTS: "3",
      DELIVERY_TIMEOUT_MS: "3000",
      // The test's push service listens on loopback over plain http.
      PUSH_ALLOWED_NETWORKS: "127.0.0.1/32",
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    });
    dbPath = config.dbPath;
    app = build(config, { logger, deliveryBackoff: { initialMs: 20, maxMs: 100 } });
    const { grpcPort } = await app.listen();
    inbox = createGrpcClient(NotificationService, { address: `127.0.0.1:${grpcPort}` });
  });

  afterAll(async () => {
    inbox?.close();
    usersClient?.close();
    await app?.shutdown();
    await users?.shutdown();
    await receiver?.stop();
    await admin?.close();
    await nats?.stop();
    dir.remove();
  });

  let n = 0;
  async function user(channels: NotificationChannel[] = [NotificationChannel.PUSH]) {
    const email = `push${++n}-${Date.now()}@example.com`;
    const password = "a good password";
    const id = (await usersClient.register({ email, password })).user?.id ?? "";
    const token = (await usersClient.login({ email, password })).accessToken;
    const auth = { headers: { authorization: `Bearer ${token}` } };
    await usersClient.updatePreferences({ preferences: { channels } }, auth);
    return { id, auth };
  }

  async function failure(p: Promise<unknown>): Promise<ConnectError> {
    try {
      await p;
    } catch (e) {
      return ConnectError.from(e);
    }
    throw new Error("expected the call to fail");
  }

  function reminderDue(userId: string, title: string): Envelope {
    const taskId = crypto.randomUUID();
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

  async function publishAndWait(event: Envelope): Promise<void> {
    const js = await admin.jetstream();
    await js.publish(`taskmesh.${event.type}`, toBinary(EnvelopeSchema, event), { msgID: event.id });
    await waitFor(`event ${event.id} handled`, () => query("SELECT 1 FROM inbox WHERE event_id = ?", event.id).length);
  }

  function query<T>(sql: string, ...params: unknown[]): T[] {
    const db = new Database(dbPath, { readonly: true });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  }

  it("serves a VAPID public key, generated once and kept beside the database", async () => {
    const u = await user();
    const { vapidPublicKey } = await inbox.getPushConfig({}, u.auth);
    expect(Buffer.from(vapidPublicKey, "base64url")).toHaveLength(65);
    const kept = JSON.parse(readFileSync(join(dir.path, VAPID_FILE), "utf8")) as { publicKey: string };
    expect(kept.publicKey).toBe(vapidPublicKey);
    expect((await failure(inbox.getPushConfig({}))).code).toBe(Code.Unauthenticated);
  });

  it("registers, lists and deletes the caller's subscriptions; a re-registered endpoint keeps its id", async () => {
    const u = await user();
    const other = await user();
    const d = pushDevice();
    const endpoint = receiver.url(`/reg/${u.id}`);
    const first = (await inbox.registerPushSubscription({ endpoint, ...d, deviceName: " laptop " }, u.auth))
      .subscription;
    expect(first).toMatchObject({ endpoint, deviceName: "laptop" });
    const d2 = pushDevice();
    const again = (await inbox.registerPushSubscription({ endpoint, ...d2, deviceName: "laptop" }, u.auth))
      .subscription;
    expect(again?.id).toBe(first?.id);
    expect((await inbox.listPushSubscriptions({}, u.auth)).subscriptions.map((s) => s.id)).toEqual([first?.id]);
    // Another user sees none of them and cannot delete them.
    expect((await inbox.listPushSubscriptions({}, other.auth)).subscriptions).toEqual([]);
    const stolen = await failure(inbox.deletePushSubscription({ subscriptionId: first?.id ?? "" }, other.auth));
    expect(stolen.code).toBe(Code.NotFound);
    await inbox.deletePushSubscription({ subscriptionId: first?.id ?? "" }, u.auth);
    expect((await inbox.listPushSubscriptions({}, u.auth)).subscriptions).toEqual([]);
    expect((await failure(inbox.deletePushSubscription({ subscriptionId: first?.id ?? "" }, u.auth))).code).toBe(
      Code.NotFound,
    );
  });

  it.each([
    ["http outside the allowed networks", { endpoint: "http://push.example.com/x" }, /endpoint must be an https URL/],
    ["a private address", { endpoint: "https://10.1.2.3/x" }, /endpoint points at a private address/],
    ["the metadata address", { endpoint: "https://169.254.169.254/x" }, /endpoint points at a linkLocal address/],
    ["not a URL", { endpoint: "push me" }, /endpoint/],
    ["a short p256dh", { p256dh: "AAAA" }, /p256dh/],
    [
      "a p256dh that is no P-256 point",
      { p256dh: Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 7)]).toString("base64url") },
      /p256dh must be/,
    ],
    ["an auth of the wrong length", { auth: Buffer.alloc(17).toString("base64url") }, /auth must be a 16-byte/],
  ])("refuses %s as INVALID_ARGUMENT naming the field", async (_, change, message) => {
    const u = await user();
    const err = await failure(
      inbox.registerPushSubscription({ endpoint: "https://push.example.com/ok", ...pushDevice(), ...change }, u.auth),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.message).toMatch(message);
  });

  it("pushes a reminder to each device: VAPID-signed for the endpoint's origin, decryptable only with the device's keys", async () => {
    const u = await user();
    const phone = pushDevice();
    const laptop = pushDevice();
    for (const [name, d] of [
      ["phone", phone],
      ["laptop", laptop],
    ] as const)
      await inbox.registerPushSubscription(
        { endpoint: receiver.url(`/ok/${name}/${u.id}`), ...d, deviceName: name },
        u.auth,
      );
    const { vapidPublicKey } = await inbox.getPushConfig({}, u.auth);
    const ev = reminderDue(u.id, "water the plants");
    await publishAndWait(ev);

    for (const [name, d] of [
      ["phone", phone],
      ["laptop", laptop],
    ] as const) {
      const hits = receiver.hits.filter((h) => h.path === `/ok/${name}/${u.id}`);
      expect(hits).toHaveLength(1);
      const hit = hits[0] as (typeof hits)[0];
      expect(hit.vapidError).toBeUndefined();
      expect(hit.vapidKey).toBe(vapidPublicKey);
      expect(hit.claims).toMatchObject({ sub: "mailto:notifications@taskmesh.local" });
      expect(hit.headers["content-encoding"]).toBe("aes128gcm");
      expect(hit.headers.ttl).toBe("86400");
      expect(hit.headers.topic).toMatch(/^[A-Za-z0-9_-]{32}$/);
      const payload = JSON.parse(d.decrypt(hit.body)) as Record<string, unknown>;
      expect(payload).toMatchObject({
        type: "reminder.due",
        notification_id: notificationIdFor(ev.id),
        event_id: ev.id,
        title: "Reminder: water the plants",
        url: "/notifications",
      });
      expect(String(payload.body)).toContain("water the plants");
    }
    // The other device's keys cannot read it.
    const phoneHit = receiver.hits.find((h) => h.path === `/ok/phone/${u.id}`);
    expect(() => laptop.decrypt(phoneHit?.body ?? Buffer.alloc(0))).toThrow();
    expect(query("SELECT status FROM deliveries WHERE event_id = ? AND channel = 'push'", ev.id)).toEqual([
      { status: "sent" },
    ]);
    // Push was the only channel chosen, and it delivered: no in-app row.
    expect(query("SELECT 1 FROM notifications WHERE source_event_id = ?", ev.id)).toEqual([]);
  });

  it("removes a subscription the push service answers 410 for, and retries a 503 like a webhook", async () => {
    const u = await user();
    const gone = receiver.url(`/gone/${u.id}`);
    const flaky = receiver.url(`/flaky/${u.id}`);
    receiver.script(`/gone/${u.id}`, [410]);
    receiver.script(`/flaky/${u.id}`, [503]);
    await inbox.registerPushSubscription({ endpoint: gone, ...pushDevice(), deviceName: "old" }, u.auth);
    await inbox.registerPushSubscription({ endpoint: flaky, ...pushDevice(), deviceName: "new" }, u.auth);
    const ev = reminderDue(u.id, "call mum");
    await publishAndWait(ev);
    expect(receiver.hits.filter((h) => h.path === `/gone/${u.id}`).map((h) => h.status)).toEqual([410]);
    expect(receiver.hits.filter((h) => h.path === `/flaky/${u.id}`).map((h) => h.status)).toEqual([503, 201]);
    expect((await inbox.listPushSubscriptions({}, u.auth)).subscriptions.map((s) => s.endpoint)).toEqual([flaky]);
    expect(query("SELECT status, attempts FROM deliveries WHERE event_id = ? AND channel = 'push'", ev.id)).toEqual([
      { status: "sent", attempts: 2 },
    ]);
  });

  it("falls back to in-app when the user chose push but has no device, and when every device is gone", async () => {
    const u = await user([NotificationChannel.PUSH]);
    const none = reminderDue(u.id, "no device");
    await publishAndWait(none);
    expect(query("SELECT status, detail FROM deliveries WHERE event_id = ? AND channel = 'push'", none.id)).toEqual([
      { status: "skipped", detail: "no push subscription" },
    ]);
    expect((await inbox.listNotifications({}, u.auth)).notifications.map((x) => x.title)).toEqual([
      "Reminder: no device",
    ]);
    receiver.script(`/gone2/${u.id}`, [404]);
    await inbox.registerPushSubscription({ endpoint: receiver.url(`/gone2/${u.id}`), ...pushDevice() }, u.auth);
    const lost = reminderDue(u.id, "device gone");
    await publishAndWait(lost);
    expect(query("SELECT status FROM deliveries WHERE event_id = ? AND channel = 'push'", lost.id)).toEqual([
      { status: "failed" },
    ]);
    expect((await inbox.listNotifications({}, u.auth)).notifications.map((x) => x.title)).toContain(
      "Reminder: device gone",
    );
    expect((await inbox.listPushSubscriptions({}, u.auth)).subscriptions).toEqual([]);
  });
});

describe("notifications database migration to push subscriptions", () => {
  it("adds push_subscriptions to a database of the previous schema, keeping the inbox", () => {
    const d = tempDir("push-migration-");
    try {
      const path = join(d.path, "notifications.db");
      const old = openDatabase(
        path,
        MIGRATIONS.filter((m) => m.version <= 4),
      );
      old
        .prepare(`INSERT INTO notifications (id, user_id, source_event_id, kind, task_id, title, body, create_time)
          VALUES ('n1', 'u1', 'e1', 1, 't1', 'kept', 'body', 1)`)
        .run();
      old.close();
      const store = NotificationsStore.open(path);
      try {
        expect(store.byId("n1")?.title).toBe("kept");
        const saved = store.savePushSubscription(
          {
            id: "s1",
            userId: "u1",
            endpoint: "https://push.example.com/1",
            p256dh: "k",
            auth: "a",
            deviceName: "",
            createTime: 2,
          },
          20,
        );
        expect(saved).toMatchObject({ id: "s1", userId: "u1" });
        store.purgeUser("u1");
        expect(store.pushSubscriptions("u1")).toEqual([]);
      } finally {
        store.close();
      }
    } finally {
      d.remove();
    }
  });
});
