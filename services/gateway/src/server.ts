import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { DashboardService } from "@taskmesh/gen/taskmesh/gateway/v1/dashboard_pb";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { CalendarFeedInternalService, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  createUserTokenVerifier,
  DependencyPolicy,
  type GrpcClient,
  type Logger,
  remoteUserKeys,
  type UserTokenVerifier,
} from "@taskmesh/platform";
import {
  EdgeServer,
  type EdgeService,
  forwardService,
  guardClient,
  type InboundCall,
  peerAddressKey,
} from "@taskmesh/platform/edge";
import { errors, type JWTVerifyGetKey } from "jose";
import { calendarRoute } from "./calendar-route.js";
import type { GatewayConfig } from "./config.js";
import { dashboardService } from "./dashboard-service.js";
import { clientIp, rateLimitInterceptor } from "./rate-limit.js";
import { streamLimitInterceptor } from "./stream-limit.js";

export type { GatewayConfig } from "./config.js";
export { loadGatewayConfig } from "./config.js";

export interface GatewayDeps {
  /** Default: a JSON logger named "gateway" at config.logLevel. */
  logger?: Logger;
  /** Clock of the rate limiter's token buckets, ms. Default performance.now. */
  now?: () => number;
  /**
   * Verifies user tokens at the edge. Default: against the users JWKS at config.jwksUrl (jose's
   * remote key set caches the keys and re-fetches on an unknown kid, so rotation needs no restart).
   */
  userTokens?: UserTokenVerifier;
}

export interface GatewayApp {
  /** Binds the public port (config.port; 0 picks a free one). */
  listen(): Promise<{ grpcPort: number }>;
  /** Stops accepting, lets in-flight calls finish, then closes the backend channels. Safe to call twice. */
  shutdown(): Promise<void>;
  /** Resilience per backend (users, tasks, notifications, analytics), e.g. to read a breaker's state. */
  readonly dependencies: ReadonlyMap<Dependency, DependencyPolicy>;
}

export type Dependency = "users" | "tasks" | "notifications" | "analytics";

/**
 * Kept back from the caller's deadline so a dashboard with a late part still reaches the caller
 * in time: a tenth of what remains, at least 20 ms (60 ms of a 600 ms deadline).
 *
 * Dashboard parts share each backend's policy with the forwarded calls, so a backend that is down
 * (UNAVAILABLE), seen from either side, is refused fast on both. But a part's budget
 * (DASHBOARD_PART_TIMEOUT_MS) is tighter than a forwarded call's: a part that misses it is only
 * named missing, and does not count against the breaker, so a slow-but-working backend cannot
 * have dashboards open its breaker for every forwarded call. Why not separate policies: the
 * shared breaker's fail-fast for a dead backend is worth keeping, and the bulkhead slots a part
 * holds are bounded by its short budget.
 */
const DASHBOARD_PART = { reserveMs: 20, reserveFraction: 0.1, deadlineCounts: false };

/**
 * The edge, wired but not listening: the public services (UserService, TaskService,
 * NotificationService, AnalyticsService) on one port
 * for gRPC, Connect and gRPC-Web, each call's user JWT verified here and then forwarded with that
 * token to the owning backend over one long-lived grpc-js channel per backend; and the BFF
 * DashboardService, which fans out to users, tasks, notifications and analytics in parallel.
 * Every call to a backend — forwarded or a dashboard part — goes through that backend's
 * DependencyPolicy (timeout, circuit breaker, bulkhead). Internal services are not mounted, so
 * their paths are 404 / UNIMPLEMENTED here.
 */
export function build(config: GatewayConfig, deps: GatewayDeps = {}): GatewayApp {
  const logger = deps.logger ?? createLogger("gateway", { level: config.logLevel });
  // Everything below is created once; a request allocates only its own headers and messages.
  const userTokens = deps.userTokens ?? createUserTokenVerifier(jwksKeys(new URL(config.jwksUrl)));
  const clientOptions = {
    defaultTimeoutMs: config.backendTimeoutMs,
    // In the mesh, Envoy retries; two layers of retries would multiply attempts.
    retries: config.mesh !== "istio",
  };
  const users = createGrpcClient(UserService, { address: config.usersAddr, ...clientOptions });
  const tasks = createGrpcClient(TaskService, { address: config.tasksAddr, ...clientOptions });
  const notifications = createGrpcClient(NotificationService, { address: config.notificationsAddr, ...clientOptions });
  const analytics = createGrpcClient(AnalyticsService, { address: config.analyticsAddr, ...clientOptions });
  const clients = [users, tasks, notifications, analytics];

  const policies = new Map<Dependency, DependencyPolicy>(
    (["users", "tasks", "notifications", "analytics"] as const).map((name) => [
      name,
      new DependencyPolicy(name, { logger, ...config.dependency }),
    ]),
  );
  const policy = (name: Dependency) => policies.get(name) as DependencyPolicy;
  // Forwarded calls: the caller's deadline capped at BACKEND_TIMEOUT_MS.
  const forwarded = { defaultTimeoutMs: config.backendTimeoutMs };
  // Dashboard parts: DASHBOARD_PART_TIMEOUT_MS each, a little of the caller's deadline kept back.
  const part = { defaultTimeoutMs: config.dashboardPartTimeoutMs, ...DASHBOARD_PART };
  const forward = {
    userTokens,
    maxTimeoutMs: config.backendTimeoutMs,
    // For the backends' audit events (users records logins with it).
    clientAddress: (ctx: InboundCall) =>
      clientIp(ctx.values.get(peerAddressKey), ctx.requestHeader, config.rateLimits.trustedProxyHops),
  };

  // The calendar feed renderer on the tasks channel (no token: the feed secret is the credential).
  const calendarFeeds = createGrpcClient(CalendarFeedInternalService, {
    address: "unused",
    channelOptions: { channelOverride: tasks.channel.getChannel() },
  });

  const edge = new EdgeServer({
    logger,
    web: { root: config.webRoot },
    // GET /calendar/<secret>.ics, through the tasks policy like any call to tasks.
    httpRoutes: [
      calendarRoute({
        feeds: guardClient(CalendarFeedInternalService, calendarFeeds, policy("tasks"), forwarded),
        limit: config.calendarRateLimit,
        maxKeys: config.rateLimits.maxKeys,
        trustedProxyHops: config.rateLimits.trustedProxyHops,
        publicOrigin: config.publicOrigin,
        logger,
        ...(deps.now ? { now: deps.now } : {}),
      }),
    ],
    corsOrigins: config.corsOrigins,
    http: config.http,
    // Per user (and per address for Register/Login), before any backend is called.
    interceptors: [
      rateLimitInterceptor({
        limits: config.rateLimits,
        userTokens,
        logger,
        ...(deps.now ? { now: deps.now } : {}),
      }),
      streamLimitInterceptor({ perUser: config.streamsPerUser, userTokens }),
    ],
    services: (drainSignal): EdgeService[] => [
      {
        service: UserService,
        // Register, Login and RefreshSession are how a caller gets a token; users' own server agrees.
        impl: forwardService(UserService, users, {
          ...forward,
          policy: { policy: policy("users"), ...forwarded },
          drainSignal,
          anonymous: ["register", "login", "refreshSession"],
        }),
        ready: backendReady(users, UserService),
      },
      {
        service: TaskService,
        impl: forwardService(TaskService, tasks, {
          ...forward,
          policy: { policy: policy("tasks"), ...forwarded },
          drainSignal,
        }),
        ready: backendReady(tasks, TaskService),
      },
      {
        service: NotificationService,
        // ListNotifications, MarkRead, and the server stream WatchNotifications (no deadline
        // unless the caller sets one; ends with the caller's cancel, the backend's end, or drain).
        impl: forwardService(NotificationService, notifications, {
          ...forward,
          policy: { policy: policy("notifications"), ...forwarded },
          drainSignal,
        }),
        ready: backendReady(notifications, NotificationService),
      },
      {
        service: AnalyticsService,
        impl: forwardService(AnalyticsService, analytics, {
          ...forward,
          policy: { policy: policy("analytics"), ...forwarded },
          drainSignal,
        }),
        ready: backendReady(analytics, AnalyticsService),
      },
      {
        service: DashboardService,
        impl: dashboardService({
          users: guardClient(UserService, users, policy("users"), part),
          tasks: guardClient(TaskService, tasks, policy("tasks"), part),
          notifications: guardClient(NotificationService, notifications, policy("notifications"), part),
          analytics: guardClient(AnalyticsService, analytics, policy("analytics"), part),
          userTokens,
          partTimeoutMs: config.dashboardPartTimeoutMs,
          logger,
        }),
        // The dashboard degrades instead of failing: it is ready whenever the edge is.
      },
    ],
    // `dependency.<name>`: SERVING unless that backend's circuit breaker is open.
    healthChecks: new Map([...policies].map(([name, p]) => [`dependency.${name}`, async () => p.available] as const)),
  });

  let stopped: Promise<void> | undefined;
  return {
    dependencies: policies,
    async listen() {
      return { grpcPort: await edge.listen(config.port, config.host) };
    },
    shutdown() {
      stopped ??= (async () => {
        await edge.shutdown(config.shutdownGraceMs);
        for (const c of clients) c.close();
      })();
      return stopped;
    },
  };
}

/**
 * The users JWKS, cached by jose (re-fetched at most every 10 minutes, or on an unknown `kid`
 * after a 30 s cool-down). When the key set cannot be fetched at all, the caller gets
 * UNAVAILABLE (retry later), not UNAUTHENTICATED (which would tell a client to drop its token).
 */
function jwksKeys(url: URL): JWTVerifyGetKey {
  const remote = remoteUserKeys(url);
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (e) {
      if (
        e instanceof errors.JWKSNoMatchingKey ||
        e instanceof errors.JWKSMultipleMatchingKeys ||
        e instanceof errors.JOSENotSupported ||
        e instanceof errors.JOSEAlgNotAllowed
      )
        throw e;
      throw new ConnectError("token keys unavailable, retry later", Code.Unavailable);
    }
  };
}

/** Readiness of a public service = its backend's own grpc.health.v1 answer, over the same channel. */
function backendReady(client: { readonly channel: GrpcClient<DescService>["channel"] }, service: DescService) {
  const health = createGrpcClient(Health, {
    address: "unused",
    channelOptions: { channelOverride: client.channel.getChannel() },
  });
  return async (signal: AbortSignal) => {
    const res = await health.check({ service: service.typeName }, { timeoutMs: 2000, signal });
    return res.status === HealthCheckResponse_ServingStatus.SERVING;
  };
}
