import { join } from "node:path";
import { ConfigError, env, JWKS_PATH, loadConfig, natsUrlField, TOPOLOGY } from "@taskmesh/platform";

const secret = (min: number, optional: boolean) => ({
  parse(name: string, raw: string | undefined): string {
    if (optional && (raw === undefined || raw === "")) return "";
    const value = env.string().parse(name, raw);
    if (value.length < min) throw new ConfigError(`${name} must be at least ${min} characters`);
    return value;
  },
});

const spec = {
  /** gRPC port (NotificationService, NotificationInternalService, health, reflection). Default 50053. */
  GRPC_PORT: env.port(TOPOLOGY.notifications.grpcPort),
  /** Default 127.0.0.1. */
  HOST: env.string("127.0.0.1"),
  /** Default .data */
  TASKMESH_DATA_DIR: env.string(".data"),
  /** Default: $TASKMESH_DATA_DIR/notifications.db */
  DB_PATH: env.string(""),
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /** The users service's JWKS, to verify user tokens. Default: users on localhost. */
  JWKS_URL: env.url(`http://127.0.0.1:${TOPOLOGY.users.httpPort}${JWKS_PATH}`),
  /** The users service (GetUserPreferences). Default 127.0.0.1:50051. */
  USERS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.users.grpcPort}`),
  /** Time budget of one GetUserPreferences call, in ms (50..30000). Default 2000. */
  USERS_TIMEOUT_MS: env.int({ fallback: 2000, min: 50, max: 30_000 }),
  /** Consecutive failures of users that open the circuit breaker (1..100). Default 5. */
  BREAKER_FAILURES: env.int({ fallback: 5, min: 1, max: 100 }),
  /** How long the open breaker refuses calls before one trial call, in ms (100..600000). Default 10000. */
  BREAKER_HALF_OPEN_MS: env.int({ fallback: 10_000, min: 100, max: 600_000 }),
  /** SMTP server for email, e.g. smtp://127.0.0.1:2525 or smtps://user:pass@host:465. Unset: email disabled. */
  SMTP_URL: {
    parse(name: string, raw: string | undefined): string {
      if (raw === undefined || raw === "") return "";
      let ok = false;
      try {
        const u = new URL(raw);
        ok = (u.protocol === "smtp:" || u.protocol === "smtps:") && u.hostname !== "";
      } catch {}
      if (!ok) throw new ConfigError(`${name} must be smtp://host:port or smtps://host:port, got "${raw}"`);
      return raw;
    },
  },
  /** Sender address of notification emails. Default "taskmesh <notifications@taskmesh.local>". */
  SMTP_FROM: env.string("taskmesh <notifications@taskmesh.local>"),
  /** HMAC-SHA256 key of the webhook signature, at least 16 characters. Unset: webhooks disabled. */
  WEBHOOK_SECRET: secret(16, true),
  /** Attempts of one webhook or email delivery (1..10), with exponential backoff and jitter between. Default 5. */
  DELIVERY_ATTEMPTS: env.int({ fallback: 5, min: 1, max: 10 }),
  /** Time budget of one webhook POST or SMTP exchange, in ms (100..60000). Default 10000. */
  DELIVERY_TIMEOUT_MS: env.int({ fallback: 10_000, min: 100, max: 60_000 }),
  /** Shared secret of internal service tokens, at least 32 characters. Required. */
  TASKMESH_SERVICE_SECRET: secret(32, false),
  TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
  LOG_LEVEL: env.oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const, "info"),
};

export interface NotificationsConfig {
  grpcPort: number;
  host: string;
  dataDir: string;
  dbPath: string;
  /** NATS_URL split into its servers. */
  natsServers: string[];
  jwksUrl: string;
  usersAddr: string;
  usersTimeoutMs: number;
  breakerFailures: number;
  breakerHalfOpenMs: number;
  /** "" = email disabled. */
  smtpUrl: string;
  smtpFrom: string;
  /** "" = webhooks disabled. */
  webhookSecret: string;
  deliveryAttempts: number;
  deliveryTimeoutMs: number;
  serviceSecret: string;
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the notifications service's environment; a ConfigError names every bad variable. */
export function loadNotificationsConfig(source: Record<string, string | undefined> = process.env): NotificationsConfig {
  const c = loadConfig(spec, source);
  return {
    grpcPort: c.GRPC_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, "notifications.db"),
    natsServers: c.NATS_URL,
    jwksUrl: c.JWKS_URL,
    usersAddr: c.USERS_ADDR,
    usersTimeoutMs: c.USERS_TIMEOUT_MS,
    breakerFailures: c.BREAKER_FAILURES,
    breakerHalfOpenMs: c.BREAKER_HALF_OPEN_MS,
    smtpUrl: c.SMTP_URL,
    smtpFrom: c.SMTP_FROM,
    webhookSecret: c.WEBHOOK_SECRET,
    deliveryAttempts: c.DELIVERY_ATTEMPTS,
    deliveryTimeoutMs: c.DELIVERY_TIMEOUT_MS,
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
