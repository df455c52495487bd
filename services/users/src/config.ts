import { join } from "node:path";
import {
  ConfigError,
  env,
  loadConfig,
  natsUrlField,
  type OutboundPolicy,
  outboundAllowField,
  type ServiceBaseConfig,
  serviceBaseConfig,
  serviceConfigSpec,
  TOPOLOGY,
} from "@taskmesh/platform";

/**
 * GRPC_PORT (UserService, UserInternalService, health, reflection), HOST, TASKMESH_DATA_DIR,
 * DB_PATH, TASKMESH_SERVICE_SECRET, TASKMESH_MESH and LOG_LEVEL come from serviceConfigSpec.
 */
const spec = {
  ...serviceConfigSpec("users"),
  /** Plain-HTTP port of the JWKS document and /healthz. */
  JWKS_PORT: env.port(TOPOLOGY.users.httpPort),
  /** Signing key file (JWKs, mode 0600). Default: $TASKMESH_DATA_DIR/users-signing-key.json */
  KEY_PATH: env.string(""),
  /**
   * Lifetime of a user access token: 1 minute to 1 day, default 15 minutes. Short, since a refresh
   * token renews it and a revoked session's access token is only refused by users before it ends.
   */
  TOKEN_TTL_SECONDS: env.int({ fallback: 900, min: 60, max: 86_400 }),
  /**
   * A session (its refresh token) not refreshed for this long expires: 5 minutes to 90 days,
   * default 14 days, and longer than TOKEN_TTL_SECONDS. Each refresh extends it, never past
   * SESSION_MAX_AGE_SECONDS after the login.
   */
  SESSION_IDLE_SECONDS: env.int({ fallback: 14 * 86_400, min: 300, max: 90 * 86_400 }),
  /** Longest life of a session from its login, however often refreshed: 1 hour to 365 days, default 30 days. */
  SESSION_MAX_AGE_SECONDS: env.int({ fallback: 30 * 86_400, min: 3600, max: 365 * 86_400 }),
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
  /** Non-public CIDRs a webhook_url may point at (on-premises receivers), comma-separated. Default none. */
  WEBHOOK_ALLOWED_NETWORKS: outboundAllowField(),
  /** Least zxcvbn strength score (0..4) of a new password; 0 = length only. Default 3. */
  PASSWORD_MIN_SCORE: env.int({ fallback: 3, min: 0, max: 4 }),
};

export interface UsersConfig extends ServiceBaseConfig {
  jwksPort: number;
  keyPath: string;
  tokenTtlSeconds: number;
  /** SESSION_IDLE_SECONDS and SESSION_MAX_AGE_SECONDS, in ms. Default 14 and 30 days. */
  sessions?: { idleMs: number; maxAgeMs: number };
  /** NATS_URL split into its servers. */
  natsServers: string[];
  tasksAddr: string;
  notificationsAddr: string;
  deletionRetryBudgetMs: number;
  deletionCallTimeoutMs: number;
  /** Where a webhook_url may point: public addresses, plus WEBHOOK_ALLOWED_NETWORKS. Default public only. */
  webhookPolicy?: OutboundPolicy;
  /** PASSWORD_MIN_SCORE. Default 3. */
  passwordMinScore?: number;
}

/** Reads and checks the users service's environment; a ConfigError names every bad variable. */
export function loadUsersConfig(source: Record<string, string | undefined> = process.env): UsersConfig {
  const c = loadConfig(spec, source);
  if (c.SESSION_IDLE_SECONDS > c.SESSION_MAX_AGE_SECONDS) {
    throw new ConfigError(
      `SESSION_IDLE_SECONDS (${c.SESSION_IDLE_SECONDS}) must not exceed SESSION_MAX_AGE_SECONDS (${c.SESSION_MAX_AGE_SECONDS})`,
    );
  }
  // A client refreshes when (or just before) its access token expires; a session idle for less
  // than that is over by then, so no session would outlive its first access token.
  if (c.SESSION_IDLE_SECONDS <= c.TOKEN_TTL_SECONDS) {
    throw new ConfigError(
      `SESSION_IDLE_SECONDS (${c.SESSION_IDLE_SECONDS}) must be longer than TOKEN_TTL_SECONDS (${c.TOKEN_TTL_SECONDS}): a session must outlive the access token it is refreshed at`,
    );
  }
  return {
    ...serviceBaseConfig(c, "users"),
    jwksPort: c.JWKS_PORT,
    keyPath: c.KEY_PATH || join(c.TASKMESH_DATA_DIR, "users-signing-key.json"),
    tokenTtlSeconds: c.TOKEN_TTL_SECONDS,
    sessions: { idleMs: c.SESSION_IDLE_SECONDS * 1000, maxAgeMs: c.SESSION_MAX_AGE_SECONDS * 1000 },
    natsServers: c.NATS_URL,
    tasksAddr: c.TASKS_ADDR,
    notificationsAddr: c.NOTIFICATIONS_ADDR,
    deletionRetryBudgetMs: c.DELETION_RETRY_BUDGET_SECONDS * 1000,
    deletionCallTimeoutMs: c.DELETION_CALL_TIMEOUT_MS,
    webhookPolicy: c.WEBHOOK_ALLOWED_NETWORKS,
    passwordMinScore: c.PASSWORD_MIN_SCORE,
  };
}
