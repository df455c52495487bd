// The per-user stream limit in the real gateway, in front of the real notifications service
// (real nats-server, users, SQLite): one account cannot take every watch slot.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EnvelopeSchema, ReminderDueSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import {
  build as buildNotifications,
  loadNotificationsConfig,
  type NotificationsApp,
} from "@taskmesh/notifications/server";
import { ensureStreams, NatsLink, newEvent, STREAMS } from "@taskmesh/platform";
import { type NatsServer, startNats } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadGatewayConfig } from "./config.js";
import { type Backends, bearer, logger, newUser, SECRET, startBackends, waitFor } from "./gateway.test-util.js";
import { build, type GatewayApp } from "./server.js";

let nats: NatsServer;
let admin: NatsLink;
let backends: Backends;
let notifications: NotificationsApp;
let gateway: GatewayApp;
let transport: Transport;

beforeAll(async () => {
  nats = await startNats();
  admin = new NatsLink({ servers: nats.url, name: "stream-limit-admin", logger, reconnectTimeWaitMs: 100 });
  await ensureStreams(await admin.jetstreamManager(), [STREAMS.REMINDERS, STREAMS.USERS, STREAMS.TASKS]);
  backends = await startBackends("gateway-stream-limit-", { natsUrl: nats.url });
  notifications = buildNotifications(
    loadNotificationsConfig({
      GRPC_PORT: "0",
      NATS_URL: nats.url,
      JWKS_URL: backends.jwksUrl,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
      DB_PATH: join(backends.dataDir, "notifications.db"),
      USERS_ADDR: backends.env.USERS_ADDR,
    }),
    { logger },
  );
  const n = await notifications.listen();
  // The defaults: WATCH_STREAMS_PER_USER 5, DEPENDENCY_MAX_STREAMS 1000.
  gateway = build(loadGatewayConfig({ ...backends.env, NOTIFICATIONS_ADDR: `127.0.0.1:${n.grpcPort}` }), { logger });
  transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${(await gateway.listen()).grpcPort}` });
});

afterAll(async () => {
  await gateway?.shutdown();
  await notifications?.shutdown();
  await backends?.stop();
  await admin?.close();
  await nats?.stop();
});

async function publishReminderDue(userId: string, title: string) {
  const taskId = randomUUID();
  const event = newEvent({
    userId,
    aggregateId: taskId,
    payload: {
      case: "reminderDue",
      value: create(ReminderDueSchema, { taskId, title, dueTime: timestampFromMs(Date.now()) }),
    },
  });
  await (await admin.jetstream()).publish(`taskmesh.${event.type}`, toBinary(EnvelopeSchema, event), {
    msgID: event.id,
  });
}

/** Opens a watch; resolves once it is refused (the error) or held open at the backend (undefined). */
function openWatch(token: string, signal: AbortSignal) {
  const it = createClient(NotificationService, transport)
    .watchNotifications({}, { ...bearer(token), signal })
    [Symbol.asyncIterator]();
  const first = it.next().then(
    (r) => r,
    (e: unknown) => ConnectError.from(e),
  );
  return { it, first };
}

describe("WatchNotifications per-user stream limit at the gateway", () => {
  it("lets one user hold 5 watches, refuses their other 995 with RESOURCE_EXHAUSTED, and still serves another user live", async () => {
    const a = await newUser(transport);
    const b = await newUser(transport);
    const aborts: AbortController[] = [];
    const held: ReturnType<typeof openWatch>[] = [];
    const refused: ConnectError[] = [];
    for (let i = 0; i < 1000; i++) {
      const abort = new AbortController();
      const w = openWatch(a.token, abort.signal);
      // An admitted watch stays open (no message yet) and shows up at notifications; a refused one
      // answers at once (5 s allows for a slow machine).
      const r = await Promise.race([
        w.first,
        i < 5
          ? waitFor("the watch to reach notifications", () => notifications.stats().watchers === i + 1).then(
              () => "open",
            )
          : new Promise((res) => setTimeout(() => res("open"), 5000)),
      ]);
      if (r instanceof ConnectError) refused.push(r);
      else {
        held.push(w);
        aborts.push(abort);
      }
    }
    expect(held).toHaveLength(5);
    expect(refused).toHaveLength(995);
    expect(refused[0]?.code).toBe(Code.ResourceExhausted);
    expect(refused[0]?.rawMessage).toMatch(/too many open streams for this user \(at most 5\)/);
    await waitFor("A's 5 watches to reach notifications", () => notifications.stats().watchers === 5);

    // B's watch opens and gets B's notification live.
    const bAbort = new AbortController();
    const bw = openWatch(b.token, bAbort.signal);
    await waitFor("B's watch to reach notifications", () => notifications.stats().watchers === 6);
    await publishReminderDue(b.id, "B's reminder");
    const got = await bw.first;
    expect(got).not.toBeInstanceOf(ConnectError);
    expect((got as IteratorResult<{ notification?: { title: string } }>).value?.notification?.title).toContain(
      "B's reminder",
    );

    // A closes one watch: the slot comes back, and only one.
    aborts[0]?.abort();
    await held[0]?.first;
    await waitFor("A's closed watch to end", () => notifications.stats().watchers === 5);
    const againAbort = new AbortController();
    aborts.push(againAbort);
    const again = openWatch(a.token, againAbort.signal);
    expect(await Promise.race([again.first, new Promise((res) => setTimeout(() => res("open"), 1000))])).toBe("open");
    const extraAbort = new AbortController();
    aborts.push(extraAbort);
    const extra = await openWatch(a.token, extraAbort.signal).first;
    expect(extra).toBeInstanceOf(ConnectError);
    expect((extra as ConnectError).code).toBe(Code.ResourceExhausted);
    for (const x of aborts) x.abort();
    bAbort.abort();
    await waitFor("every watch to end", () => notifications.stats().watchers === 0);
  });
});
