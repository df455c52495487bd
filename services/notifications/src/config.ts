import {
  ConfigError,
  env,
  jwksUrlField,
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
 * GRPC_PORT (NotificationService, NotificationInternalService, health, reflection; default 50053),
 * HOST, TASKMESH_DATA_DIR, DB_PATH, TASKMESH_SERVICE_SECRET, TASKMESH_MESH and LOG_LEVEL come from
 * serviceConfigSpec.
 */
const spec = {
  ...serviceConfigSpec("notifications"),
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /** The users service's JWKS, to verify user tokens. Default: users on localhost. */
  JWKS_URL: jwksUrlField(),
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
  WEBHOOK_SECRET: env.secret(16, ""),
  /** Attempts of one webhook or email delivery (1..10), with exponential backoff and jitter between. Default 5. */
  DELIVERY_ATTEMPTS: env.int({ fallback: 5, min: 1, max: 10 }),
  /** Time budget of one webhook POST or SMTP exchange, in ms (100..60000). Default 10000. */
  DELIVERY_TIMEOUT_MS: env.int({ fallback: 10_000, min: 100, max: 60_000 }),
  /** Non-public CIDRs a webhook may connect to (on-premises receivers), comma-separated. Default none. */
  WEBHOOK_ALLOWED_NETWORKS: outboundAllowField(),
  /**
   * VAPID public key (base64url, uncompressed P-256) of Web Push. Set together with
   * VAPID_PRIVATE_KEY; unset, a pair is generated once and kept in vapid-keys.json beside the database.
   */
  VAPID_PUBLIC_KEY: env.string(""),
  /** VAPID private key (base64url). Default: see VAPID_PUBLIC_KEY. */
  VAPID_PRIVATE_KEY: env.secret(16, ""),
  /** Contact the push services may use, `mailto:` or `https:` (the VAPID JWT's sub). Default mailto:notifications@taskmesh.local. */
  VAPID_SUBJECT: {
    parse(name: string, raw: string | undefined): string {
      const v = raw || "mailto:notifications@taskmesh.local";
      if (!/^(mailto:\S+@\S+|https:\/\/\S+)$/.test(v))
        throw new ConfigError(`${name} must be a mailto: or https: URL, got "${v}"`);
      return v;
    },
  },
  /**
   * Non-public CIDRs a push endpoint may connect to, comma-separated; a plain-http endpoint is
   * accepted only at an IP inside them (a test's local receiver). Default none: public https only.
   */
  PUSH_ALLOWED_NETWORKS: outboundAllowField(),
};

export interface NotificationsConfig extends ServiceBaseConfig {
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
  /** Where a webhook may connect: public addresses, plus WEBHOOK_ALLOWED_NETWORKS. Default public only. */
  webhookPolicy?: OutboundPolicy;
  /** VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY, "" when generated and kept beside the database. */
  vapidPublicKey: string;
  vapidPrivateKey: string;
  vapidSubject: string;
  /** Where a push endpoint may connect: public addresses, plus PUSH_ALLOWED_NETWORKS. */
  pushPolicy?: OutboundPolicy;
}

/** Reads and checks the notifications service's environment; a ConfigError names every bad variable. */
export function loadNotificationsConfig(source: Record<string, string | undefined> = process.env): NotificationsConfig {
  const c = loadConfig(spec, source);
  if (!c.VAPID_PUBLIC_KEY !== !c.VAPID_PRIVATE_KEY)
    throw new ConfigError("VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY must be set together (or neither: generated once)");
  return {
    ...serviceBaseConfig(c, "notifications"),
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
    webhookPolicy: c.WEBHOOK_ALLOWED_NETWORKS,
    vapidPublicKey: c.VAPID_PUBLIC_KEY,
    vapidPrivateKey: c.VAPID_PRIVATE_KEY,
    vapidSubject: c.VAPID_SUBJECT,
    pushPolicy: c.PUSH_ALLOWED_NETWORKS,
  };
}
