import { join } from "node:path";
import { ConfigError, env, loadConfig, natsUrlField, TOPOLOGY } from "@taskmesh/platform";

const spec = {
  /** gRPC port (UserService, UserInternalService, health, reflection). */
  GRPC_PORT: env.port(TOPOLOGY.users.grpcPort),
  /** Plain-HTTP port of the JWKS document and /healthz. */
  JWKS_PORT: env.port(TOPOLOGY.users.httpPort),
  HOST: env.string("127.0.0.1"),
  TASKMESH_DATA_DIR: env.string(".data"),
  /** Default: $TASKMESH_DATA_DIR/users.db */
  DB_PATH: env.string(""),
  /** Signing key file (JWKs, mode 0600). Default: $TASKMESH_DATA_DIR/users-signing-key.json */
  KEY_PATH: env.string(""),
  /** Lifetime of a user access token: 1 minute to 1 day, default 1 hour. */
  TOKEN_TTL_SECONDS: env.int({ fallback: 3600, min: 60, max: 86_400 }),
  /** Shared secret of internal service tokens, at least 32 characters. */
  TASKMESH_SERVICE_SECRET: {
    parse(name: string, raw: string | undefined): string {
      const value = env.string().parse(name, raw);
      if (value.length < 32) throw new ConfigError(`${name} must be at least 32 characters`);
      return value;
    },
  },
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /** The tasks service (TaskInternalService/PurgeUser, for account deletion). Default 127.0.0.1:50052. */
  TASKS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.tasks.grpcPort}`),
  /** The notifications service (NotificationInternalService/PurgeUser). Default 127.0.0.1:50053. */
  NOTIFICATIONS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.notifications.grpcPort}`),
  /**
   * How long an account-deletion step keeps retrying a callee that is away (UNAVAILABLE,
   * DEADLINE_EXCEEDED) before the saga compensates, in seconds (10..86400). Default 900.
   */
  DELETION_RETRY_BUDGET_SECONDS: env.int({ fallback: 900, min: 10, max: 86_400 }),
  /** Deadline of one purge call of the deletion saga, in ms (100..60000). Default 10000. */
  DELETION_CALL_TIMEOUT_MS: env.int({ fallback: 10_000, min: 100, max: 60_000 }),
  TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
  LOG_LEVEL: env.oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const, "info"),
};

export interface UsersConfig {
  grpcPort: number;
  jwksPort: number;
  host: string;
  dataDir: string;
  dbPath: string;
  keyPath: string;
  tokenTtlSeconds: number;
  serviceSecret: string;
  /** NATS_URL split into its servers. */
  natsServers: string[];
  tasksAddr: string;
  notificationsAddr: string;
  deletionRetryBudgetMs: number;
  deletionCallTimeoutMs: number;
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the users service's environment; a ConfigError names every bad variable. */
export function loadUsersConfig(source: Record<string, string | undefined> = process.env): UsersConfig {
  const c = loadConfig(spec, source);
  return {
    grpcPort: c.GRPC_PORT,
    jwksPort: c.JWKS_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, "users.db"),
    keyPath: c.KEY_PATH || join(c.TASKMESH_DATA_DIR, "users-signing-key.json"),
    tokenTtlSeconds: c.TOKEN_TTL_SECONDS,
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    natsServers: c.NATS_URL,
    tasksAddr: c.TASKS_ADDR,
    notificationsAddr: c.NOTIFICATIONS_ADDR,
    deletionRetryBudgetMs: c.DELETION_RETRY_BUDGET_SECONDS * 1000,
    deletionCallTimeoutMs: c.DELETION_CALL_TIMEOUT_MS,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
