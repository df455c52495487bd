import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type ServiceImpl, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { DashboardService, Part } from "@taskmesh/gen/taskmesh/gateway/v1/dashboard_pb";
import { Kind, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { freePort } from "@taskmesh/platform/testing";
import { generateKeyPair, SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { loadGatewayConfig } from "./config.js";
import {
  type Backends,
  bearer,
  errorOf,
  logger,
  newUser,
  sleep,
  startBackend,
  startBackends,
} from "./gateway.test-util.js";
import { build, type GatewayApp, type GatewayDeps } from "./server.js";

let backends: Backends;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  backends = await startBackends("dashboard-test-");
});
afterEach(async () => {
  for (const stop of cleanup.splice(0).reverse()) await stop();
});
afterAll(async () => {
  await backends?.stop();
});

/** A gateway over the real users and tasks, with `env` on top; shut down after the test. */
async function startGateway(env: Record<string, string> = {}, deps: GatewayDeps = {}) {
  const nowhere = async () => `127.0.0.1:${await freePort()}`;
  const app: GatewayApp = build(
    loadGatewayConfig({
      NOTIFICATIONS_ADDR: await nowhere(),
      ANALYTICS_ADDR: await nowhere(),
      ...backends.env,
      ...env,
    }),
    { logger, ...deps },
  );
  const port = (await app.listen()).grpcPort;
  cleanup.push(() => app.shutdown());
  const baseUrl = `http://127.0.0.1:${port}`;
  const transport: Transport = createGrpcTransport({ baseUrl });
  return {
    app,
    baseUrl,
    transport,
    dashboard: createClient(DashboardService, transport),
    tasks: createClient(TaskService, transport),
    health: async (service: string) => (await createClient(Health, transport).check({ service })).status,
  };
}

type AnalyticsMode = "ok" | "hang" | "unavailable" | "not-found";

/** A real AnalyticsService backend whose GetStats answers as `mode` says, counting the calls it receives. */
async function startAnalytics(initial: AnalyticsMode) {
  const state = { mode: initial, received: 0, cancelled: 0 };
  const impl: ServiceImpl<typeof AnalyticsService> = {
    async getStats(_req, ctx) {
      state.received++;
      switch (state.mode) {
        case "hang":
          await sleep(60_000, ctx.signal);
          if (ctx.signal.aborted) state.cancelled++;
          throw new ConnectError("gave up", Code.Unavailable);
        case "unavailable":
          throw new ConnectError("analytics is rebuilding", Code.Unavailable);
        case "not-found":
          throw new ConnectError("no read model for this user yet", Code.NotFound);
        default:
          return { stats: { createdCount: 7n, completedCount: 2n, completionRate: 2 / 7 } };
      }
    },
    searchTasks: async () => ({ hits: [] }),
    listAuditEvents: async () => ({ events: [] }),
  };
  const backend = await startBackend(AnalyticsService, impl, backends.jwksUrl);
  cleanup.push(backend.stop);
  return { state, address: backend.address };
}

/** A real NotificationService backend with one unread notification. */
async function startNotifications() {
  const impl: ServiceImpl<typeof NotificationService> = {
    listNotifications: async (req) => ({
      notifications: [
        {
          id: crypto.randomUUID(),
          kind: Kind.REMINDER,
          title: "water the plants",
          body: `unread only: ${req.unreadOnly}`,
        },
      ],
      unreadCount: 1n,
    }),
    markRead: async () => ({ unreadCount: 0n }),
    getPushConfig: async () => ({ vapidPublicKey: "" }),
    registerPushSubscription: async () => ({}),
    listPushSubscriptions: async () => ({ subscriptions: [] }),
    deletePushSubscription: async () => ({}),
    // biome-ignore lint/correctness/useYield: not called by the dashboard.
    watchNotifications: async function* () {
      throw new ConnectError("not in this test", Code.Unimplemented);
    },
  };
  const backend = await startBackend(NotificationService, impl, backends.jwksUrl);
  cleanup.push(backend.stop);
  return backend.address;
}

const missingOf = (res: { missing: { part: Part; code: string }[] }) =>
  Object.fromEntries(res.missing.map((m) => [Part[m.part], m.code]));

describe("DashboardService.GetDashboard", () => {
  it("answers with the user and the next open tasks by due time, naming notifications and stats missing (UNAVAILABLE) while nothing serves them", async () => {
    const gw = await startGateway();
    const me = await newUser(gw.transport);
    const due = (day: number) => timestampFromDate(new Date(Date.UTC(2030, 0, day, 9)));
    // Seven open tasks due on days 1..7 (created out of order), one completed due earlier, one without a due time.
    const ids = new Map<number, string>();
    for (const day of [5, 2, 7, 1, 4, 6, 3]) {
      const created = await gw.tasks.createTask({ task: { title: `day ${day}`, dueTime: due(day) } }, bearer(me.token));
      ids.set(day, created.task?.id ?? "");
    }
    const done = await gw.tasks.createTask({ task: { title: "done", dueTime: due(1) } }, bearer(me.token));
    await gw.tasks.completeTask({ taskId: done.task?.id ?? "" }, bearer(me.token));
    await gw.tasks.createTask({ task: { title: "someday" } }, bearer(me.token));

    const res = await gw.dashboard.getDashboard({}, bearer(me.token));
    expect(res.user?.id).toBe(me.id);
    expect(res.user?.email).toBe(me.email);
    expect(res.upcomingTasks.map((t) => t.title)).toEqual(["day 1", "day 2", "day 3", "day 4", "day 5"]);
    expect(res.upcomingTasks.map((t) => t.id)).toEqual([1, 2, 3, 4, 5].map((d) => ids.get(d)));
    expect(res.unreadNotifications).toEqual([]);
    expect(res.stats).toBeUndefined();
    expect(missingOf(res)).toEqual({ NOTIFICATIONS: "UNAVAILABLE", STATS: "UNAVAILABLE" });
  });

  it("is served over Connect JSON too, with the missing parts by name", async () => {
    const gw = await startGateway();
    const me = await newUser(gw.transport);
    const res = await fetch(`${gw.baseUrl}/taskmesh.gateway.v1.DashboardService/GetDashboard`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${me.token}` },
      body: "{}",
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { user: { id: string }; missing: { part: string; code: string }[] };
    expect(body.user.id).toBe(me.id);
    expect(body.missing.map((m) => [m.part, m.code])).toEqual([
      ["PART_NOTIFICATIONS", "UNAVAILABLE"],
      ["PART_STATS", "UNAVAILABLE"],
    ]);
  });

  it("refuses a caller without a valid token (UNAUTHENTICATED) before calling any backend", async () => {
    const analytics = await startAnalytics("ok");
    const gw = await startGateway({ ANALYTICS_ADDR: analytics.address });
    expect((await errorOf(gw.dashboard.getDashboard({}))).code).toBe(Code.Unauthenticated);
    expect((await errorOf(gw.dashboard.getDashboard({}, bearer("not-a-jwt")))).code).toBe(Code.Unauthenticated);
    expect(analytics.state.received).toBe(0);
  });

  it("fails as a whole with UNAUTHENTICATED when users refuses the token, even if the edge accepted it", async () => {
    // An edge that accepts any token stands for the edge and users disagreeing (e.g. mid key rotation).
    const gw = await startGateway({}, { userTokens: { verify: async () => crypto.randomUUID() } });
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "EdDSA", kid: backends.users.keys.current.kid })
      .setSubject(crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime("10m")
      .sign(privateKey);
    const e = await errorOf(gw.dashboard.getDashboard({}, bearer(forged)));
    expect(e.code).toBe(Code.Unauthenticated);
  });

  it("answers within about the part timeout when a dependency is slow: that part DEADLINE_EXCEEDED, the others present, the slow call cancelled", async () => {
    const analytics = await startAnalytics("ok");
    const notifications = await startNotifications();
    const timeoutMs = 300;
    const gw = await startGateway({
      ANALYTICS_ADDR: analytics.address,
      NOTIFICATIONS_ADDR: notifications,
      DASHBOARD_PART_TIMEOUT_MS: String(timeoutMs),
    });
    const me = await newUser(gw.transport);
    await gw.tasks.createTask({ task: { title: "one open task" } }, bearer(me.token));
    // Warm up (key sets fetched, channels connected): every part answers.
    const warm = await gw.dashboard.getDashboard({}, bearer(me.token));
    expect(warm.missing).toEqual([]);
    expect(warm.stats?.createdCount).toBe(7n);

    analytics.state.mode = "hang";
    const started = performance.now();
    const res = await gw.dashboard.getDashboard({}, bearer(me.token));
    const elapsed = performance.now() - started;

    expect(missingOf(res)).toEqual({ STATS: "DEADLINE_EXCEEDED" });
    expect(res.missing[0]?.message).toContain(`${timeoutMs} ms`);
    expect(res.user?.id).toBe(me.id);
    expect(res.upcomingTasks.map((t) => t.title)).toEqual(["one open task"]);
    expect(res.unreadNotifications.map((n) => n.title)).toEqual(["water the plants"]);
    expect(res.unreadNotifications[0]?.body).toBe("unread only: true");
    expect(res.unreadCount).toBe(1n);
    expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 5);
    expect(elapsed).toBeLessThan(3 * timeoutMs); // the handler would have waited 60 s
    // Cooperative timeout: the call to analytics was cancelled, not left running.
    await vi.waitFor(() => expect(analytics.state.cancelled).toBe(1), { timeout: 2000 });
  });

  it("keeps other routes fast while 50 dashboards hang on analytics", async () => {
    const analytics = await startAnalytics("hang");
    const gw = await startGateway({
      ANALYTICS_ADDR: analytics.address,
      DASHBOARD_PART_TIMEOUT_MS: "3000",
      // Keep the breaker out of this test: every dashboard call reaches analytics and hangs.
      BREAKER_FAILURES: "1000",
    });
    const me = await newUser(gw.transport);
    await gw.tasks.listTasks({}, bearer(me.token));

    const t0 = performance.now();
    const dashboards = Array.from({ length: 50 }, () =>
      gw.dashboard.getDashboard({}, bearer(me.token)).then((res) => ({ res, end: performance.now() - t0 })),
    );
    await vi.waitFor(() => expect(analytics.state.received).toBe(50), { timeout: 2500, interval: 10 });

    const others: { route: string; start: number; end: number }[] = [];
    for (let i = 0; i < 10; i++) {
      let start = performance.now() - t0;
      await gw.tasks.createTask({ task: { title: `during the hang ${i}` } }, bearer(me.token));
      others.push({ route: "CreateTask", start, end: performance.now() - t0 });
      start = performance.now() - t0;
      await gw.tasks.listTasks({ pageSize: 5 }, bearer(me.token));
      others.push({ route: "ListTasks", start, end: performance.now() - t0 });
    }
    const answered = await Promise.all(dashboards);

    for (const { res } of answered) {
      expect(missingOf(res)).toEqual({ NOTIFICATIONS: "UNAVAILABLE", STATS: "DEADLINE_EXCEEDED" });
      expect(res.user?.id).toBe(me.id);
    }
    const firstDashboard = Math.min(...answered.map((a) => a.end));
    const slowestOther = Math.max(...others.map((o) => o.end - o.start));
    const report = JSON.stringify({ firstDashboard, slowestOther, others });
    // Every other call started and finished while all 50 dashboards were still waiting ...
    expect(Math.max(...others.map((o) => o.end)), report).toBeLessThan(firstDashboard);
    // ... and took a small fraction of the time the dashboards were held.
    expect(slowestOther * 10, report).toBeLessThan(firstDashboard);
  });

  it("refuses calls beyond the bulkhead at once (RESOURCE_EXHAUSTED) instead of piling them on a hanging dependency", async () => {
    const analytics = await startAnalytics("hang");
    const gw = await startGateway({
      ANALYTICS_ADDR: analytics.address,
      DASHBOARD_PART_TIMEOUT_MS: "1500",
      DEPENDENCY_MAX_CONCURRENT: "4",
      DEPENDENCY_MAX_QUEUED: "2",
      BREAKER_FAILURES: "1000",
    });
    const me = await newUser(gw.transport);
    await gw.tasks.listTasks({}, bearer(me.token));
    const calls: Promise<{ code: string | undefined; ms: number }>[] = [];
    for (let i = 0; i < 10; i++) {
      // Staggered, so the fast users and tasks parts never meet the same small bulkhead.
      const start = performance.now();
      calls.push(
        gw.dashboard.getDashboard({}, bearer(me.token)).then((res) => ({
          code: missingOf(res).STATS,
          ms: performance.now() - start,
        })),
      );
      await sleep(30);
    }
    const results = await Promise.all(calls);
    const refused = results.filter((r) => r.code === "RESOURCE_EXHAUSTED");
    const timedOut = results.filter((r) => r.code === "DEADLINE_EXCEEDED");
    expect(refused).toHaveLength(4); // 4 in flight + 2 queued; the last 4 are refused
    expect(timedOut).toHaveLength(6);
    expect(Math.max(...refused.map((r) => r.ms))).toBeLessThan(Math.min(...timedOut.map((r) => r.ms)));
    expect(analytics.state.received).toBeLessThanOrEqual(6);
  });

  it("does not count a deadline the caller cut short against the dependency", async () => {
    const analytics = await startAnalytics("hang");
    const gw = await startGateway({
      ANALYTICS_ADDR: analytics.address,
      DASHBOARD_PART_TIMEOUT_MS: "5000",
      BREAKER_FAILURES: "1",
    });
    const me = await newUser(gw.transport);
    const res = await gw.dashboard.getDashboard({}, { ...bearer(me.token), timeoutMs: 1500 });
    // The caller still gets its dashboard before its own deadline, the late part named.
    expect(missingOf(res).STATS).toBe("DEADLINE_EXCEEDED");
    expect(res.user?.id).toBe(me.id);
    expect(gw.app.dependencies.get("analytics")?.state).toBe("closed");
  });
});

describe("circuit breaker per dependency", () => {
  // Channel retries off (as in the mesh, TASKMESH_MESH=istio), so one dashboard call is one attempt.
  const breakerEnv = (analytics: string) => ({
    ANALYTICS_ADDR: analytics,
    TASKMESH_MESH: "istio",
    BREAKER_FAILURES: "3",
    BREAKER_HALF_OPEN_MS: "400",
  });

  it("opens after N failures and then fails fast without reaching the dependency; half-opens after the delay; closes when it answers again", async () => {
    const analytics = await startAnalytics("unavailable");
    const gw = await startGateway(breakerEnv(analytics.address));
    const me = await newUser(gw.transport);
    const stats = async () => {
      const res = await gw.dashboard.getDashboard({}, bearer(me.token));
      return { code: missingOf(res).STATS, message: res.missing.find((m) => m.part === Part.STATS)?.message ?? "" };
    };
    const policy = gw.app.dependencies.get("analytics");

    expect(await gw.health("dependency.analytics")).toBe(Status.SERVING);
    for (let i = 0; i < 3; i++) expect((await stats()).code).toBe("UNAVAILABLE");
    expect(analytics.state.received).toBe(3);
    expect(policy?.state).toBe("open");
    expect(await gw.health("dependency.analytics")).toBe(Status.NOT_SERVING);
    expect(await gw.health("dependency.users")).toBe(Status.SERVING);

    // Open: five more calls, none reaches analytics.
    for (let i = 0; i < 5; i++) {
      const s = await stats();
      expect(s.code).toBe("UNAVAILABLE");
      expect(s.message).toContain("circuit open");
    }
    expect(analytics.state.received).toBe(3);

    // After the delay one trial call goes through; it fails, so the breaker opens again.
    await sleep(450);
    expect((await stats()).code).toBe("UNAVAILABLE");
    expect(analytics.state.received).toBe(4);
    expect(policy?.state).toBe("open");
    expect((await stats()).message).toContain("circuit open");
    expect(analytics.state.received).toBe(4);

    // The dependency recovers: the next trial succeeds and the breaker closes.
    analytics.state.mode = "ok";
    await sleep(450);
    const res = await gw.dashboard.getDashboard({}, bearer(me.token));
    expect(res.stats?.createdCount).toBe(7n);
    expect(missingOf(res).STATS).toBeUndefined();
    expect(policy?.state).toBe("closed");
    expect(await gw.health("dependency.analytics")).toBe(Status.SERVING);
    for (let i = 0; i < 3; i++) expect((await gw.dashboard.getDashboard({}, bearer(me.token))).stats).toBeDefined();
    expect(analytics.state.received).toBe(8);
  });

  it("is not opened by business errors (NOT_FOUND), which also reset the count of failures", async () => {
    const analytics = await startAnalytics("not-found");
    const gw = await startGateway(breakerEnv(analytics.address));
    const me = await newUser(gw.transport);
    const statsCode = async () => missingOf(await gw.dashboard.getDashboard({}, bearer(me.token))).STATS;
    for (let i = 0; i < 6; i++) expect(await statsCode()).toBe("NOT_FOUND");
    expect(analytics.state.received).toBe(6);
    expect(gw.app.dependencies.get("analytics")?.state).toBe("closed");

    // Two failures, an answer, two failures: never three in a row.
    for (const mode of ["unavailable", "unavailable", "not-found", "unavailable", "unavailable"] as const) {
      analytics.state.mode = mode;
      await statsCode();
    }
    expect(gw.app.dependencies.get("analytics")?.state).toBe("closed");
    expect(analytics.state.received).toBe(11);
    // A third failure in a row opens it.
    await statsCode();
    expect(gw.app.dependencies.get("analytics")?.state).toBe("open");
  });

  it("does not open for dashboard parts that miss their budget: the slow part is named missing, forwarded calls still reach the backend", async () => {
    const analytics = await startAnalytics("hang");
    const gw = await startGateway({ ...breakerEnv(analytics.address), DASHBOARD_PART_TIMEOUT_MS: "300" });
    const me = await newUser(gw.transport);
    for (let i = 0; i < 4; i++) {
      const res = await gw.dashboard.getDashboard({}, bearer(me.token));
      expect(missingOf(res).STATS).toBe("DEADLINE_EXCEEDED");
    }
    // Four misses against a breaker that opens after three failures: every one reached analytics.
    expect(analytics.state.received).toBe(4);
    expect(gw.app.dependencies.get("analytics")?.state).toBe("closed");
    expect(await gw.health("dependency.analytics")).toBe(Status.SERVING);
    const search = await createClient(AnalyticsService, gw.transport).searchTasks(
      { query: "anything" },
      bearer(me.token),
    );
    expect(search.hits).toEqual([]);
  });

  it("guards the forwarding routes too: a backend that is down opens its breaker, then forwarded calls fail fast with UNAVAILABLE", async () => {
    const gw = await startGateway({
      TASKS_ADDR: `127.0.0.1:${await freePort()}`,
      TASKMESH_MESH: "istio",
      BREAKER_FAILURES: "3",
    });
    const me = await newUser(gw.transport);
    for (let i = 0; i < 3; i++) {
      const e = await errorOf(gw.tasks.listTasks({}, bearer(me.token)));
      expect(e.code).toBe(Code.Unavailable);
      expect(e.rawMessage).not.toContain("circuit open");
    }
    expect(await gw.health("dependency.tasks")).toBe(Status.NOT_SERVING);
    const fast = await errorOf(gw.tasks.createTask({ task: { title: "x" } }, bearer(me.token)));
    expect(fast.code).toBe(Code.Unavailable);
    expect(fast.rawMessage).toContain("circuit open");
    // The dashboard shares that breaker; users has its own and is unaffected.
    const res = await gw.dashboard.getDashboard({}, bearer(me.token));
    expect(res.missing.find((m) => m.part === Part.TASKS)?.message).toContain("circuit open");
    expect(res.user?.id).toBe(me.id);
    expect(await gw.health("dependency.users")).toBe(Status.SERVING);
  });
});
