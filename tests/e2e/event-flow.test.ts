// Issue 3, end to end through the gateway only: a recurring task with a reminder a few seconds
// ahead → reminders fires reminder.due → notifications delivers it in-app (live on the caller's
// WatchNotifications stream) and by email (to a real SMTP server in this process) → completing
// the task makes recurrence create the next occurrence exactly once → analytics' stats and search
// reflect it all. Every service is a real process started by the runner, with a real nats-server.
import type { AddressInfo } from "node:net";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { Kind, type Notification, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { NotificationChannel, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { pushDevice, startPushReceiver, waitFor } from "@taskmesh/platform/testing";
import { builtServices } from "@taskmesh/runner";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2E, startE2E } from "./harness.js";

const NEEDED = ["users", "tasks", "gateway", "recurrence", "reminders", "notifications", "analytics"];
const WEEK_MS = 7 * 24 * 3600 * 1000;

interface Email {
  to: string[];
  raw: string;
}

/** A real SMTP server (smtp-server) on 127.0.0.1 that keeps every message it accepts. */
async function startSmtp() {
  const received: Email[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        received.push({
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString("utf8"),
        });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let smtp: Awaited<ReturnType<typeof startSmtp>>;
let push: Awaited<ReturnType<typeof startPushReceiver>>;
let e2e: E2E;
beforeAll(async () => {
  const missing = NEEDED.filter((n) => !(builtServices() as string[]).includes(n));
  if (missing.length > 0)
    throw new Error(`the event flow needs these services built (TOPOLOGY): ${missing.join(", ")}`);
  smtp = await startSmtp();
  push = await startPushReceiver();
  // Only notifications reads SMTP_URL and PUSH_ALLOWED_NETWORKS (a plain-http push endpoint on
  // loopback, the local push receiver); the runner gives every service the same extra environment.
  e2e = await startE2E({ env: { SMTP_URL: smtp.url, PUSH_ALLOWED_NETWORKS: "127.0.0.0/8" } });
});
afterAll(async () => {
  await e2e?.stop();
  await smtp?.stop();
  await push?.stop();
});

describe("the event flow through the gateway", () => {
  it("a weekly task's reminder arrives live in-app and by email; completing it yields the next occurrence once; stats and search show it", async () => {
    const transport = createGrpcTransport({ baseUrl: e2e.system.endpoints.gateway });
    const users = createClient(UserService, transport);
    const tasks = createClient(TaskService, transport);
    const inbox = createClient(NotificationService, transport);
    const analytics = createClient(AnalyticsService, transport);

    const email = `flow-${crypto.randomUUID()}@example.com`;
    const password = "correct-horse-battery";
    await users.register({ email, password });
    const token = (await users.login({ email, password })).accessToken;
    const auth = { headers: { authorization: `Bearer ${token}` } };
    await users.updatePreferences(
      { preferences: { timeZone: "UTC", channels: [NotificationChannel.IN_APP, NotificationChannel.EMAIL] } },
      auth,
    );

    // The watch is open before anything can fire; every notification it gets is kept.
    const watchAbort = new AbortController();
    const live: Notification[] = [];
    let watchEnded: unknown;
    const watching = (async () => {
      try {
        for await (const m of inbox.watchNotifications({}, { ...auth, signal: watchAbort.signal }))
          if (m.notification) live.push(m.notification);
      } catch (e) {
        watchEnded = e;
      }
    })();

    // Due in ~8 s (whole seconds), reminded 5 s before: the reminder fires ~3 s from now.
    const dueMs = Math.ceil((Date.now() + 8000) / 1000) * 1000;
    const created = (
      await tasks.createTask(
        {
          task: {
            title: "Water the balcony ferns",
            notes: "the big pot too",
            dueTime: timestampFromMs(dueMs),
            timeZone: "UTC",
            recurrenceRule: "FREQ=WEEKLY",
            reminderOffsets: [{ seconds: 5n }],
          },
        },
        auth,
      )
    ).task;
    const taskId = created?.id ?? "";
    expect(taskId).not.toBe("");

    // In-app, live on the watch stream (the reminder, not only the later due notice).
    const reminder = await waitFor(
      "the reminder on the watch stream",
      () => live.find((n) => n.kind === Kind.REMINDER && n.taskId === taskId),
      15_000,
    );
    expect(reminder.title).toContain("Water the balcony ferns");
    expect(watchEnded).toBeUndefined();
    // ... also in the inbox.
    const listed = await inbox.listNotifications({}, auth);
    expect(listed.notifications.map((n) => n.id)).toContain(reminder.id);
    // Read: the unread count drops by one and the notification carries its read time.
    const marked = await inbox.markRead({ notificationIds: [reminder.id] }, auth);
    expect(marked.unreadCount).toBe(listed.unreadCount - 1n);
    const after = await inbox.listNotifications({}, auth);
    expect(after.notifications.find((n) => n.id === reminder.id)?.readTime).toBeDefined();

    // By email, to the account's address.
    const mail = await waitFor(
      "the reminder email",
      () => smtp.received.find((m) => m.to.includes(email) && m.raw.includes("Water the balcony ferns")),
      15_000,
    );
    expect(mail.raw).toMatch(/Subject: .*Reminder/);

    // Completing it: recurrence creates the next weekly occurrence, once.
    await tasks.completeTask({ taskId }, auth);
    const children = async () =>
      (await tasks.listTasks({ pageSize: 100 }, auth)).tasks.filter((t) => t.parentTaskId === taskId);
    const [next] = await waitFor(
      "the next occurrence",
      async () => {
        const c = await children();
        return c.length > 0 ? c : undefined;
      },
      15_000,
    );
    expect(next?.dueTime && timestampDate(next.dueTime).getTime()).toBe(dueMs + WEEK_MS);
    expect(next).toMatchObject({
      title: "Water the balcony ferns",
      status: TaskStatus.OPEN,
      recurrenceRule: expect.stringContaining("FREQ=WEEKLY"),
    });
    // Still exactly one a little later (a redelivered task.completed must not make a second).
    await new Promise((r) => setTimeout(r, 2500));
    expect((await children()).map((t) => t.id)).toEqual([next?.id]);
    const all = (await tasks.listTasks({ pageSize: 100 }, auth)).tasks;
    expect(all.map((t) => t.id).sort()).toEqual([taskId, next?.id].sort());

    // Stats and search, fed by the events: two created (the task and its occurrence), one completed.
    const stats = await waitFor(
      "stats with the occurrence and the completion",
      async () => {
        const s = (await analytics.getStats({}, auth)).stats;
        return s && s.createdCount === 2n && s.completedCount === 1n ? s : undefined;
      },
      10_000,
    );
    expect(stats.openCount).toBe(1n);
    const hits = (await analytics.searchTasks({ query: "ferns" }, auth)).hits;
    expect(hits.map((h) => [h.taskId, h.completed]).sort()).toEqual(
      [
        [taskId, true],
        [next?.id, false],
      ].sort(),
    );

    watchAbort.abort();
    await watching;
  }, 50_000);

  it("a reminder reaches a device by Web Push when the user chose push: VAPID-signed by the service's key, readable only with the device's keys", async () => {
    const transport = createGrpcTransport({ baseUrl: e2e.system.endpoints.gateway });
    const users = createClient(UserService, transport);
    const tasks = createClient(TaskService, transport);
    const inbox = createClient(NotificationService, transport);
    const email = `push-${crypto.randomUUID()}@example.com`;
    const password = "correct-horse-battery";
    await users.register({ email, password });
    const auth = { headers: { authorization: `Bearer ${(await users.login({ email, password })).accessToken}` } };
    await users.updatePreferences({ preferences: { timeZone: "UTC", channels: [NotificationChannel.PUSH] } }, auth);
    // What the web client's service worker does: subscribe with the VAPID key, register the device.
    const { vapidPublicKey } = await inbox.getPushConfig({}, auth);
    const device = pushDevice();
    const path = `/wpush/${crypto.randomUUID()}`;
    await inbox.registerPushSubscription(
      { endpoint: push.url(path), p256dh: device.p256dh, auth: device.auth, deviceName: "e2e laptop" },
      auth,
    );

    // Due in ~6 s, reminded 3 s before.
    const dueMs = Math.ceil((Date.now() + 6000) / 1000) * 1000;
    const taskId =
      (
        await tasks.createTask(
          {
            task: {
              title: "Call the plumber",
              dueTime: timestampFromMs(dueMs),
              timeZone: "UTC",
              reminderOffsets: [{ seconds: 3n }],
            },
          },
          auth,
        )
      ).task?.id ?? "";
    const hit = await waitFor(
      "the reminder at the push endpoint",
      () => push.hits.find((h) => h.path === path),
      15_000,
    );
    expect(hit.vapidError).toBeUndefined();
    expect(hit.vapidKey).toBe(vapidPublicKey);
    expect(hit.headers["content-encoding"]).toBe("aes128gcm");
    // The push service sees ciphertext only; the device decrypts the notification.
    expect(hit.body.includes(Buffer.from("Call the plumber"))).toBe(false);
    const message = JSON.parse(device.decrypt(hit.body)) as Record<string, unknown>;
    expect(message).toMatchObject({ type: "reminder.due", task_id: taskId });
    expect(String(message.title)).toContain("Call the plumber");
  }, 40_000);
});
