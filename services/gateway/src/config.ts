import { statSync } from "node:fs";
import { ConfigError, env, jwksUrlField, loadConfig, serverConfigSpec, TOPOLOGY } from "@taskmesh/platform";
import type { OnePortServerOptions } from "@taskmesh/platform/edge";
import type { RateLimits } from "./rate-limit.js";
import type { BucketSpec } from "./token-buckets.js";

/**
 * GRPC_PORT (the one public port: gRPC (h2c), Connect (HTTP/1.1 and h2c) and gRPC-Web; default
 * 8080), HOST, TASKMESH_MESH (`istio`: leave retries to Envoy so attempts do not multiply) and
 * LOG_LEVEL come from serverConfigSpec. The gateway keeps no database and serves no internal method.
 */
const spec = {
  ...serverConfigSpec("gateway"),
  /** UserService backend, host:port. Default 127.0.0.1:50051. */
  USERS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.users.grpcPort}`),
  /** TaskService backend, host:port. Default 127.0.0.1:50052. */
  TASKS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.tasks.grpcPort}`),
  /** NotificationService backend, host:port. Default 127.0.0.1:50053. */
  NOTIFICATIONS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.notifications.grpcPort}`),
  /** AnalyticsService backend, host:port. Default 127.0.0.1:50054. */
  ANALYTICS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.analytics.grpcPort}`),
  /** The users service's JWKS, to verify user tokens at the edge. Default: users on localhost. */
  JWKS_URL: jwksUrlField(),
  /** Longest deadline given to a forwarded call (a caller's shorter deadline wins), 100..60000 ms. Default 10000. */
  BACKEND_TIMEOUT_MS: env.int({ fallback: 10_000, min: 100, max: 60_000 }),
  /** Each dashboard part's own deadline (a caller's shorter deadline wins), 50..30000 ms. Default 800. */
  DASHBOARD_PART_TIMEOUT_MS: env.int({ fallback: 800, min: 50, max: 30_000 }),
  /** Bulkhead: calls in flight per backend, 1..10000. Default 64. */
  DEPENDENCY_MAX_CONCURRENT: env.int({ fallback: 64, min: 1, max: 10_000 }),
  /** Bulkhead: calls waiting for a slot per backend (more are RESOURCE_EXHAUSTED), 0..10000. Default 32. */
  DEPENDENCY_MAX_QUEUED: env.int({ fallback: 32, min: 0, max: 10_000 }),
  /** Server streams open per backend (more are RESOURCE_EXHAUSTED), 1..100000. Default 1000. */
  DEPENDENCY_MAX_STREAMS: env.int({ fallback: 1000, min: 1, max: 100_000 }),
  /** Server streams (WatchNotifications) one user may hold open at once, besides DEPENDENCY_MAX_STREAMS; 1..1000. Default 5. */
  WATCH_STREAMS_PER_USER: env.int({ fallback: 5, min: 1, max: 1000 }),
  /** Consecutive failures of a backend that open its circuit breaker, 1..1000. Default 5. */
  BREAKER_FAILURES: env.int({ fallback: 5, min: 1, max: 1000 }),
  /** How long an open breaker fails fast before one trial call (half-open), 100..600000 ms. Default 5000. */
  BREAKER_HALF_OPEN_MS: env.int({ fallback: 5000, min: 100, max: 600_000 }),
  /** Calls per second per user (refill rate of each user's token bucket), 0 = no limit, ..100000. Default 50. */
  RATE_LIMIT_RPS: env.int({ fallback: 50, min: 0, max: 100_000 }),
  /** Calls a user may make at once (bucket size), 1..1000000. Default 100. */
  RATE_LIMIT_BURST: env.int({ fallback: 100, min: 1, max: 1_000_000 }),
  /** Register + Login per client address, per minute; 0 = no sign-in limits at all, ..1000000. Default 30. */
  LOGIN_RATE_LIMIT_PER_MINUTE: env.int({ fallback: 30, min: 0, max: 1_000_000 }),
  /** Register + Login attempts at once per client address, 1..100000. Default 20. */
  LOGIN_RATE_LIMIT_BURST: env.int({ fallback: 20, min: 1, max: 100_000 }),
  /**
   * Login per email from all addresses together, as a multiple of the per-address rate and burst,
   * 2..10000. Default 10 (300/min, burst 200): far above what one address may try.
   */
  LOGIN_EMAIL_CEILING_FACTOR: env.int({ fallback: 10, min: 2, max: 10_000 }),
  /** Failed Logins per (client address, email) before exponential waits start (1 s, 2 s, 4 s, ...), 1..1000. Default 5. */
  LOGIN_FREE_FAILURES: env.int({ fallback: 5, min: 1, max: 1000 }),
  /** Longest of those waits, 1..86400 s. Default 900. */
  LOGIN_BACKOFF_MAX_SECONDS: env.int({ fallback: 900, min: 1, max: 86_400 }),
  /** Rate-limit keys (users, addresses, emails) kept per limit; least recently used dropped beyond. 100..10000000. Default 100000. */
  RATE_LIMIT_MAX_KEYS: env.int({ fallback: 100_000, min: 100, max: 10_000_000 }),
  /** GET /calendar/<secret>.ics per client address, per minute; 0 = no limit, ..1000000. Default 60. */
  CALENDAR_RATE_LIMIT_PER_MINUTE: env.int({ fallback: 60, min: 0, max: 1_000_000 }),
  /** Calendar feed requests at once per client address, 1..100000. Default 20. */
  CALENDAR_RATE_LIMIT_BURST: env.int({ fallback: 20, min: 1, max: 100_000 }),
  /**
   * Origin of the web app as users reach it (e.g. https://todo.example.com), for the links in
   * calendar feeds. Default "": http:// plus the request's Host header.
   */
  PUBLIC_ORIGIN: {
    parse(name: string, raw: string | undefined): string {
      if (!raw) return "";
      let origin = "";
      try {
        origin = new URL(raw).origin;
      } catch {}
      if (origin !== raw || !/^https?:/.test(raw))
        throw new ConfigError(
          `${name} must be an origin like https://todo.example.com (no path or trailing slash), got "${raw}"`,
        );
      return raw;
    },
  },
  /** Proxies in front that append to x-forwarded-for (client = that entry from the right); 0 = TCP peer. 0..10. Default 0. */
  TRUSTED_PROXY_HOPS: env.int({ fallback: 0, min: 0, max: 10 }),
  /**
   * Directory of the built web client (web/dist), served at `/`. Must be a directory if it exists;
   * a directory without index.html is reported on `/` as not built, so the API still starts.
   * Default "": no web client (npm start sets it).
   */
  WEB_ROOT: {
    parse(name: string, raw: string | undefined): string {
      if (!raw) return "";
      const st = statSync(raw, { throwIfNoEntry: false });
      if (st && !st.isDirectory())
        throw new ConfigError(`${name} must be a directory (the web build), got the file "${raw}"`);
      return raw;
    },
  },
  /**
   * Origins allowed to call the gateway from a web page hosted elsewhere, comma-separated, each
   * `scheme://host[:port]` (e.g. https://app.example.com). Default "": same origin only.
   */
  CORS_ALLOWED_ORIGINS: {
    parse(name: string, raw: string | undefined): string[] {
      const list = (raw ?? "")
        .split(",")
        .map((o) => o.trim())
        .filter(Boolean);
      for (const o of list) {
        let origin = "";
        try {
          origin = new URL(o).origin;
        } catch {}
        if (origin !== o || !/^https?:/.test(o))
          throw new ConfigError(
            `${name} must list origins like https://app.example.com (no path or trailing slash), got "${o}"`,
          );
      }
      return list;
    },
  },
  /** Time for a connection's first bytes (protocol sniffing), 100..600000 ms. Default 5000. */
  EDGE_SNIFF_TIMEOUT_MS: env.int({ fallback: 5000, min: 100, max: 600_000 }),
  /** HTTP/1.1: time for a request's headers, 100..600000 ms. Default 10000. */
  EDGE_HEADERS_TIMEOUT_MS: env.int({ fallback: 10_000, min: 100, max: 600_000 }),
  /** Time for a whole request (headers and body) to arrive, HTTP/1.1 and HTTP/2, 100..3600000 ms. Default 30000. */
  EDGE_REQUEST_TIMEOUT_MS: env.int({ fallback: 30_000, min: 100, max: 3_600_000 }),
  /** HTTP/2: time for the client's SETTINGS after its preface, 100..600000 ms. Default 5000. */
  EDGE_SETTINGS_TIMEOUT_MS: env.int({ fallback: 5000, min: 100, max: 600_000 }),
  /** HTTP/2 session without streams / HTTP/1.1 keep-alive connection idle this long is closed, 100..3600000 ms. Default 30000. */
  EDGE_IDLE_TIMEOUT_MS: env.int({ fallback: 30_000, min: 100, max: 3_600_000 }),
  /** HTTP/2: PING interval while streams are open (an unanswered PING closes the session), 100..3600000 ms. Default 30000. */
  EDGE_KEEPALIVE_PING_MS: env.int({ fallback: 30_000, min: 100, max: 3_600_000 }),
  /** Connections one client address may hold (TCP peer: raise it behind a proxy), 0 = no cap, ..1000000. Default 100. */
  EDGE_MAX_CONNECTIONS_PER_ADDRESS: env.int({ fallback: 100, min: 0, max: 1_000_000 }),
  /** How long shutdown lets in-flight calls finish, 0..60000 ms. Default 10000. */
  SHUTDOWN_GRACE_MS: env.int({ fallback: 10_000, min: 0, max: 60_000 }),
};

export interface GatewayConfig {
  port: number;
  host: string;
  usersAddr: string;
  tasksAddr: string;
  notificationsAddr: string;
  analyticsAddr: string;
  jwksUrl: string;
  backendTimeoutMs: number;
  dashboardPartTimeoutMs: number;
  dependency: {
    maxConcurrent: number;
    maxQueued: number;
    maxStreams: number;
    breakerFailures: number;
    halfOpenAfterMs: number;
  };
  rateLimits: RateLimits;
  /** GET /calendar/<secret>.ics per client address (CALENDAR_RATE_LIMIT_*); undefined: none. */
  calendarRateLimit: BucketSpec | undefined;
  /** PUBLIC_ORIGIN; "" derives it from the Host header. */
  publicOrigin: string;
  /** Slow-client timeouts and the per-address connection cap of the edge (EDGE_*). */
  http: OnePortServerOptions;
  /** Server streams per user (WATCH_STREAMS_PER_USER); ~74 KB of gateway memory per idle stream (npm run bench:watch-memory). */
  streamsPerUser: number;
  shutdownGraceMs: number;
  /** The web client's build directory; "" serves none. */
  webRoot: string;
  /** Cross-origin callers allowed; empty = same origin only. */
  corsOrigins: string[];
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the gateway's environment; a ConfigError names every bad variable. */
export function loadGatewayConfig(source: Record<string, string | undefined> = process.env): GatewayConfig {
  const c = loadConfig(spec, source);
  return {
    port: c.GRPC_PORT,
    host: c.HOST,
    usersAddr: c.USERS_ADDR,
    tasksAddr: c.TASKS_ADDR,
    notificationsAddr: c.NOTIFICATIONS_ADDR,
    analyticsAddr: c.ANALYTICS_ADDR,
    jwksUrl: c.JWKS_URL,
    backendTimeoutMs: c.BACKEND_TIMEOUT_MS,
    dashboardPartTimeoutMs: c.DASHBOARD_PART_TIMEOUT_MS,
    dependency: {
      maxConcurrent: c.DEPENDENCY_MAX_CONCURRENT,
      maxQueued: c.DEPENDENCY_MAX_QUEUED,
      maxStreams: c.DEPENDENCY_MAX_STREAMS,
      breakerFailures: c.BREAKER_FAILURES,
      halfOpenAfterMs: c.BREAKER_HALF_OPEN_MS,
    },
    rateLimits: {
      user: c.RATE_LIMIT_RPS > 0 ? { ratePerSecond: c.RATE_LIMIT_RPS, burst: c.RATE_LIMIT_BURST } : undefined,
      login:
        c.LOGIN_RATE_LIMIT_PER_MINUTE > 0
          ? { ratePerSecond: c.LOGIN_RATE_LIMIT_PER_MINUTE / 60, burst: c.LOGIN_RATE_LIMIT_BURST }
          : undefined,
      loginEmail:
        c.LOGIN_RATE_LIMIT_PER_MINUTE > 0
          ? {
              ratePerSecond: (c.LOGIN_RATE_LIMIT_PER_MINUTE * c.LOGIN_EMAIL_CEILING_FACTOR) / 60,
              burst: c.LOGIN_RATE_LIMIT_BURST * c.LOGIN_EMAIL_CEILING_FACTOR,
            }
          : undefined,
      loginBackoff:
        c.LOGIN_RATE_LIMIT_PER_MINUTE > 0
          ? { freeFailures: c.LOGIN_FREE_FAILURES, maxMs: c.LOGIN_BACKOFF_MAX_SECONDS * 1000 }
          : undefined,
      maxKeys: c.RATE_LIMIT_MAX_KEYS,
      trustedProxyHops: c.TRUSTED_PROXY_HOPS,
    },
    calendarRateLimit:
      c.CALENDAR_RATE_LIMIT_PER_MINUTE > 0
        ? { ratePerSecond: c.CALENDAR_RATE_LIMIT_PER_MINUTE / 60, burst: c.CALENDAR_RATE_LIMIT_BURST }
        : undefined,
    publicOrigin: c.PUBLIC_ORIGIN,
    streamsPerUser: c.WATCH_STREAMS_PER_USER,
    http: {
      sniffTimeoutMs: c.EDGE_SNIFF_TIMEOUT_MS,
      headersTimeoutMs: c.EDGE_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: c.EDGE_REQUEST_TIMEOUT_MS,
      settingsTimeoutMs: c.EDGE_SETTINGS_TIMEOUT_MS,
      idleTimeoutMs: c.EDGE_IDLE_TIMEOUT_MS,
      keepAlivePingMs: c.EDGE_KEEPALIVE_PING_MS,
      maxConnectionsPerAddress: c.EDGE_MAX_CONNECTIONS_PER_ADDRESS,
    },
    shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
    webRoot: c.WEB_ROOT,
    corsOrigins: c.CORS_ALLOWED_ORIGINS,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
