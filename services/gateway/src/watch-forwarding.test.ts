import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { Kind, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { requireUser } from "@taskmesh/platform";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadGatewayConfig } from "./config.js";
import {
  type Backends,
  bearer,
  errorOf,
  logger,
  newUser,
  startBackend,
  startBackends,
  waitFor,
} from "./gateway.test-util.js";
import { build, type GatewayApp } from "./server.js";

// WatchNotifications forwarded by the gateway to a real grpc-js NotificationService backend (the
// platform's GrpcServer, verifying user tokens against the real users JWKS) whose watch stream
// the test drives: what it sends, when it ends or fails, and what it saw of the call (user,
// deadline, cancellation). The real notifications service behind the gateway is in
// event-services.test.ts.

let backends: Backends;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  backends = await startBackends("gateway-watch-test-");
});
afterEach(async () => {
  for (const stop of cleanup.splice(0).reverse()) await stop();
});
afterAll(async () => {
  await backends?.stop();
});

/** One WatchNotifications call as the backend sees it. */
interface BackendWatch {
  userId: string;
  /** ctx.timeoutMs() when the call arrived: undefined = no deadline. */
  deadlineMs: number | undefined;
  send(title: string): void;
  /** Ends the stream: OK, or with `error`. */
  end(error?: ConnectError): void;
  /** The handler has returned (for whatever reason). */
  done: boolean;
  /** The call was cancelled under the handler (client cancel or deadline), not ended by it. */
  cancelled: boolean;
}

/** A real NotificationService backend whose WatchNotifications streams what the test sends. */
async function startWatchBackend() {
  const state = { received: 0, failWith: undefined as ConnectError | undefined, watches: [] as BackendWatch[] };
  const impl: ServiceImpl<typeof NotificationService> = {
    listNotifications: async () => ({ notifications: [], unreadCount: 3n }),
    markRead: async () => ({ unreadCount: 0n }),
    getPushConfig: async () => ({ vapidPublicKey: "" }),
    registerPushSubscription: async () => ({}),
    listPushSubscriptions: async () => ({ subscriptions: [] }),
    deletePushSubscription: async () => ({}),
    watchNotifications: async function* (_req, ctx) {
      state.received++;
      if (state.failWith) throw state.failWith;
      const items: string[] = [];
      let ending: { error?: ConnectError | undefined } | undefined;
      let wake = () => {};
      const w: BackendWatch = {
        userId: requireUser(ctx).userId,
        deadlineMs: ctx.timeoutMs(),
        send(title) {
          items.push(title);
          wake();
        },
        end(error) {
          ending = { error };
          wake();
        },
        done: false,
        cancelled: false,
      };
      state.watches.push(w);
      const onAbort = () => wake();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        for (;;) {
          const title = items.shift();
          if (title !== undefined) {
            yield { notification: { id: randomUUID(), kind: Kind.REMINDER, title } };
            continue;
          }
          if (ending?.error) throw ending.error;
          if (ending || ctx.signal.aborted) return;
          await new Promise<void>((r) => {
            wake = r;
          });
        }
      } finally {
        w.cancelled = ctx.signal.aborted;
        w.done = true;
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  };
  const backend = await startBackend(NotificationService, impl, backends.jwksUrl);
  cleanup.push(backend.stop);
  return { state, address: backend.address };
}

/** A gateway over the real users and tasks and the given notifications backend. */
async function startGateway(notificationsAddr: string, env: Record<string, string> = {}) {
  const app: GatewayApp = build(loadGatewayConfig({ ...backends.env, NOTIFICATIONS_ADDR: notificationsAddr, ...env }), {
    logger,
  });
  const port = (await app.listen()).grpcPort;
  let stopped = false;
  cleanup.push(async () => {
    if (!stopped) await app.shutdown();
  });
  const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
  return {
    app,
    transport,
    notifications: createClient(NotificationService, transport),
    health: async (service: string) => (await createClient(Health, transport).check({ service })).status,
    async shutdown() {
      stopped = true;
      await app.shutdown();
    },
  };
}

/** Reads a client stream into `into` until it ends; resolves to the error it ended with, or undefined. */
async function drain(stream: AsyncIterable<{ notification?: { title: string } }>, into: string[]) {
  try {
    for await (const m of stream) into.push(m.notification?.title ?? "");
    return undefined;
  } catch (e) {
    return ConnectError.from(e);
  }
}

describe("NotificationService.WatchNotifications through the gateway", () => {
  it("forwards the stream with the caller's token: the backend sees that user, the caller gets each message in order", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address);
    const me = await newUser(gw.transport);
    const got: string[] = [];
    const ended = drain(gw.notifications.watchNotifications({}, bearer(me.token)), got);
    const watch = await waitFor("the backend stream", () => backend.state.watches[0]);
    expect(watch.userId).toBe(me.id);
    watch.send("water the plants");
    watch.send("pay the rent");
    await waitFor("two messages", () => got.length === 2);
    watch.send("call mum");
    watch.end();
    expect(await ended).toBeUndefined();
    expect(got).toEqual(["water the plants", "pay the rent", "call mum"]);
  });

  it("refuses a caller without a valid token (UNAUTHENTICATED) without opening a backend stream", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address);
    const err = await drain(gw.notifications.watchNotifications({}, bearer("not-a-jwt")), []);
    expect(err?.code).toBe(Code.Unauthenticated);
    expect(backend.state.received).toBe(0);
  });

  it("has no deadline unless the caller sets one: the stream outlives BACKEND_TIMEOUT_MS, and a caller's deadline reaches the backend", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address, { BACKEND_TIMEOUT_MS: "200" });
    const me = await newUser(gw.transport);

    const got: string[] = [];
    const ended = drain(gw.notifications.watchNotifications({}, bearer(me.token)), got);
    const open = await waitFor("the backend stream", () => backend.state.watches[0]);
    expect(open.deadlineMs).toBeUndefined();
    await new Promise((r) => setTimeout(r, 500)); // well past the 200 ms unary cap
    open.send("still here");
    open.end();
    expect(await ended).toBeUndefined();
    expect(got).toEqual(["still here"]);

    const started = Date.now();
    const late = drain(gw.notifications.watchNotifications({}, { ...bearer(me.token), timeoutMs: 700 }), []);
    const timed = await waitFor("the second backend stream", () => backend.state.watches[1]);
    expect(timed.deadlineMs).toBeGreaterThan(300);
    expect(timed.deadlineMs).toBeLessThanOrEqual(700);
    expect((await late)?.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor("the backend to see its deadline pass", () => timed.done && timed.cancelled);
  });

  it("cancels the backend stream when the caller cancels", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address);
    const me = await newUser(gw.transport);
    const abort = new AbortController();
    const got: string[] = [];
    const ended = drain(gw.notifications.watchNotifications({}, { ...bearer(me.token), signal: abort.signal }), got);
    const watch = await waitFor("the backend stream", () => backend.state.watches[0]);
    watch.send("first");
    await waitFor("the first message", () => got.length === 1);
    abort.abort();
    expect((await ended)?.code).toBe(Code.Canceled);
    await waitFor("the backend to see the cancel", () => watch.done);
    expect(watch.cancelled).toBe(true);
  });

  it("ends with the backend's code and message when the backend fails the stream, after the messages sent before", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address);
    const me = await newUser(gw.transport);
    const got: string[] = [];
    const ended = drain(gw.notifications.watchNotifications({}, bearer(me.token)), got);
    const watch = await waitFor("the backend stream", () => backend.state.watches[0]);
    watch.send("one");
    watch.end(new ConnectError("inbox is being purged", Code.FailedPrecondition));
    const err = await ended;
    expect(got).toEqual(["one"]);
    expect(err?.code).toBe(Code.FailedPrecondition);
    expect(err?.rawMessage).toBe("inbox is being purged");
  });

  it("holds a stream slot while a stream is open: beyond DEPENDENCY_MAX_STREAMS a watch is refused at once (RESOURCE_EXHAUSTED), unary calls still pass, and an ended stream frees its slot", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address, { DEPENDENCY_MAX_STREAMS: "2" });
    const me = await newUser(gw.transport);
    const first = drain(gw.notifications.watchNotifications({}, bearer(me.token)), []);
    await waitFor("the first backend stream", () => backend.state.watches.length === 1);
    drain(gw.notifications.watchNotifications({}, bearer(me.token)), []);
    await waitFor("the second backend stream", () => backend.state.watches.length === 2);
    expect(gw.app.dependencies.get("notifications")?.openStreams).toBe(2);

    const refused = await drain(gw.notifications.watchNotifications({}, bearer(me.token)), []);
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toMatch(/notifications has too many open streams/);
    expect(backend.state.received).toBe(2);
    // Streams have their own slots: unary calls to the same backend are not starved by them.
    expect((await gw.notifications.listNotifications({}, bearer(me.token))).unreadCount).toBe(3n);

    backend.state.watches[0]?.end();
    expect(await first).toBeUndefined();
    await waitFor("the slot to be freed", () => gw.app.dependencies.get("notifications")?.openStreams === 1);
    drain(gw.notifications.watchNotifications({}, bearer(me.token)), []);
    await waitFor("a third backend stream", () => backend.state.watches.length === 3);
  });

  it("counts a backend that fails streams against its breaker: once open, watches fail fast (UNAVAILABLE) without reaching it, and health says so", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address, { BREAKER_FAILURES: "3", BREAKER_HALF_OPEN_MS: "300" });
    const me = await newUser(gw.transport);
    backend.state.failWith = new ConnectError("inbox database is locked", Code.Unavailable);
    for (let i = 0; i < 3; i++) {
      const err = await drain(gw.notifications.watchNotifications({}, bearer(me.token)), []);
      expect(err?.code).toBe(Code.Unavailable);
      expect(err?.rawMessage).toBe("inbox database is locked");
    }
    expect(await gw.health("dependency.notifications")).toBe(Status.NOT_SERVING);
    const fast = await drain(gw.notifications.watchNotifications({}, bearer(me.token)), []);
    expect(fast?.code).toBe(Code.Unavailable);
    expect(fast?.rawMessage).toMatch(/notifications is unavailable \(circuit open\)/);
    // The unary routes share the breaker.
    expect((await errorOf(gw.notifications.listNotifications({}, bearer(me.token)))).rawMessage).toMatch(
      /circuit open/,
    );
    expect(backend.state.received).toBe(3);

    // After the half-open delay a stream goes through as the trial; its first message closes the breaker.
    backend.state.failWith = undefined;
    await new Promise((r) => setTimeout(r, 350));
    const got: string[] = [];
    drain(gw.notifications.watchNotifications({}, bearer(me.token)), got);
    const watch = await waitFor("the trial stream", () => backend.state.watches[0]);
    watch.send("back again");
    await waitFor("its message", () => got.length === 1);
    await waitFor("the breaker to close", () => gw.app.dependencies.get("notifications")?.state === "closed");
    expect(await gw.health("dependency.notifications")).toBe(Status.SERVING);
  });

  it("never counts a caller's cancel against the breaker (here a single failure would open it)", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address, { BREAKER_FAILURES: "1" });
    const me = await newUser(gw.transport);
    for (let i = 0; i < 3; i++) {
      const abort = new AbortController();
      const ended = drain(gw.notifications.watchNotifications({}, { ...bearer(me.token), signal: abort.signal }), []);
      await waitFor("the backend stream", () => backend.state.watches[i]);
      abort.abort();
      expect((await ended)?.code).toBe(Code.Canceled);
    }
    expect(gw.app.dependencies.get("notifications")?.state).toBe("closed");
    expect(await gw.health("dependency.notifications")).toBe(Status.SERVING);
  });

  it("ends open watches with UNAVAILABLE when the gateway shuts down, so clients reconnect elsewhere", async () => {
    const backend = await startWatchBackend();
    const gw = await startGateway(backend.address, { SHUTDOWN_GRACE_MS: "5000" });
    const me = await newUser(gw.transport);
    const ended = drain(gw.notifications.watchNotifications({}, bearer(me.token)), []);
    const watch = await waitFor("the backend stream", () => backend.state.watches[0]);
    const started = Date.now();
    await gw.shutdown();
    expect(Date.now() - started).toBeLessThan(4000); // an open watch does not hold shutdown for the grace period
    expect((await ended)?.code).toBe(Code.Unavailable);
    await waitFor("the backend stream to be cancelled", () => watch.done);
  });
});
