// Slow clients against the real gateway (over the real users and tasks): raw sockets that send
// headers slowly, never send SETTINGS, trickle a body or sit idle are closed within the edge's
// timeouts (set short here), one address cannot hold more than its share of connections, and a
// quiet server stream outlives the idle timeout because the edge PINGs its connection.
import http2 from "node:http2";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { Kind, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadGatewayConfig } from "./config.js";
import { type Backends, bearer, logger, newUser, startBackend, startBackends } from "./gateway.test-util.js";
import { build, type GatewayApp } from "./server.js";

const LIMITS = {
  EDGE_SNIFF_TIMEOUT_MS: "1000",
  EDGE_HEADERS_TIMEOUT_MS: "1000",
  EDGE_REQUEST_TIMEOUT_MS: "2000",
  EDGE_SETTINGS_TIMEOUT_MS: "1000",
  EDGE_IDLE_TIMEOUT_MS: "1500",
  EDGE_KEEPALIVE_PING_MS: "400",
  EDGE_MAX_CONNECTIONS_PER_ADDRESS: "8",
};
/** Allowed on top of a timeout: timer granularity (HTTP/1.1 checks every 250 ms here) and a busy machine. */
const SLACK_MS = 1500;

let backends: Backends;
let watchBackend: { address: string; stop(): Promise<void> };
let gateway: GatewayApp;
let port: number;

beforeAll(async () => {
  backends = await startBackends("gateway-slow-clients-");
  // A real grpc-js NotificationService whose watch sends one notification, then stays quiet.
  watchBackend = await startBackend(
    NotificationService,
    {
      listNotifications: async () => ({ notifications: [], unreadCount: 0n }),
      markRead: async () => ({ unreadCount: 0n }),
      getPushConfig: async () => ({ vapidPublicKey: "" }),
      registerPushSubscription: async () => ({}),
      listPushSubscriptions: async () => ({ subscriptions: [] }),
      deletePushSubscription: async () => ({}),
      watchNotifications: async function* (_req, ctx) {
        yield { notification: { id: crypto.randomUUID(), kind: Kind.REMINDER, title: "first" } };
        await new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true }));
      },
    },
    backends.jwksUrl,
  );
  gateway = build(loadGatewayConfig({ ...backends.env, NOTIFICATIONS_ADDR: watchBackend.address, ...LIMITS }), {
    logger,
  });
  port = (await gateway.listen()).grpcPort;
});
afterAll(async () => {
  await gateway?.shutdown();
  await watchBackend?.stop();
  await backends?.stop();
});

/** A raw TCP connection to the gateway, and when (ms after connecting) the server closed it. */
async function rawSocket() {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((r) => socket.once("connect", r));
  const start = Date.now();
  socket.on("data", () => {});
  socket.on("error", () => {});
  const closedAfter = new Promise<number>((r) => socket.once("close", () => r(Date.now() - start)));
  return { socket, closedAfter };
}

/** Writes `text` one byte every `everyMs` until the socket closes (or the text runs out). */
async function trickle(socket: net.Socket, text: string, everyMs: number) {
  for (const ch of text) {
    if (socket.destroyed) return;
    socket.write(ch);
    await sleep(everyMs);
  }
}

describe("the gateway against slow clients", () => {
  it("closes an HTTP/1.1 connection whose headers trickle in (slowloris) within the headers timeout", async () => {
    const { socket, closedAfter } = await rawSocket();
    socket.write("POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\n");
    void trickle(socket, `X-Slow: ${"a".repeat(1000)}`, 100);
    expect(await closedAfter).toBeLessThan(1000 + SLACK_MS);
  });

  it("closes a connection that sends nothing within the sniff timeout", async () => {
    const { closedAfter } = await rawSocket();
    expect(await closedAfter).toBeLessThan(1000 + SLACK_MS);
  });

  it("closes an HTTP/2 connection that sends the preface but never its SETTINGS", async () => {
    const { socket, closedAfter } = await rawSocket();
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    expect(await closedAfter).toBeLessThan(1000 + SLACK_MS);
  });

  it("closes an HTTP/1.1 connection whose body trickles in within the request timeout", async () => {
    const { socket, closedAfter } = await rawSocket();
    socket.write(
      "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    );
    void trickle(socket, `{"service":"${"a".repeat(980)}"}`, 100);
    expect(await closedAfter).toBeLessThan(2000 + SLACK_MS);
  });

  it("resets an HTTP/2 stream whose body trickles in within the request timeout", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    const stream = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => {});
    stream.resume();
    const start = Date.now();
    const closed = new Promise<number>((r) => stream.once("close", () => r(Date.now() - start)));
    const timer = setInterval(() => !stream.destroyed && stream.write(Buffer.from([0])), 100);
    const after = await closed;
    clearInterval(timer);
    session.close();
    expect(after).toBeLessThan(2000 + SLACK_MS);
  });

  it("closes an HTTP/2 session with no stream after the idle timeout", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    const start = Date.now();
    const closedAfter = await new Promise<number>((r) => session.once("close", () => r(Date.now() - start)));
    expect(closedAfter).toBeLessThan(1500 + SLACK_MS);
  });

  it("refuses more connections from one address than the cap, and accepts again once one closes", async () => {
    const held = await Promise.all(Array.from({ length: 8 }, () => rawSocket()));
    for (const h of held) h.socket.write("GET /x HTTP/1.1\r\nHost: x\r\n"); // mid-headers: not yet timed out
    const extra = await rawSocket();
    expect(await extra.closedAfter).toBeLessThan(500);
    held[0]?.socket.destroy();
    await held[0]?.closedAfter;
    await sleep(50);
    const again = await rawSocket();
    const race = await Promise.race([again.closedAfter, sleep(300).then(() => "open")]);
    expect(race).toBe("open");
    for (const h of [...held, again]) h.socket.destroy();
    await Promise.all([...held, again].map((h) => h.closedAfter));
    await sleep(200); // the server's side of those sockets closes too
  });

  it("PINGs a connection while a stream is open, and not while none is", async () => {
    const me = await newUser(createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    let pings = 0;
    session.on("ping", () => pings++);
    await sleep(1000); // no stream: no PING
    expect(pings).toBe(0);
    const stream = session.request({
      ":method": "POST",
      ":path": "/taskmesh.notifications.v1.NotificationService/WatchNotifications",
      "content-type": "application/grpc",
      te: "trailers",
      ...bearer(me.token).headers,
    });
    stream.on("error", () => {});
    stream.resume();
    stream.end(Buffer.from([0, 0, 0, 0, 0])); // one empty gRPC message: WatchNotificationsRequest {}
    await sleep(2000); // PINGs every 400 ms
    expect(pings).toBeGreaterThanOrEqual(3);
    stream.close();
    session.close();
  });

  it("keeps a quiet server stream up past the idle timeout, and the connection serves calls meanwhile", async () => {
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
    const me = await newUser(transport);
    const abort = new AbortController();
    const watch = createClient(NotificationService, transport)
      .watchNotifications({}, { ...bearer(me.token), signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await watch.next()).value?.notification?.title).toBe("first");
    const next = watch.next().then(
      () => "message",
      (e: unknown) => ConnectError.from(e).rawMessage,
    );
    // Three idle timeouts with nothing on the stream.
    expect(await Promise.race([next, sleep(4500).then(() => "still open")])).toBe("still open");
    const health = createClient(Health, transport);
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    abort.abort();
    await next;
  });
});
