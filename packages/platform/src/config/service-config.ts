import { join } from "node:path";
import { DEFAULT_INBOX_RETENTION_MS } from "../events/inbox.js";
import { JWKS_PATH, type ServiceName, TOPOLOGY } from "../topology.js";
import { type ConfigOf, env } from "./config.js";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * The variables every server reads (STYLE.md, "Config env names every service shares"): where it
 * listens, whether it runs in a mesh, how much it logs. Spread into a service's own spec:
 * `loadConfig({ ...serverConfigSpec("gateway"), GATEWAY_X: env.int() })` keeps every field typed.
 */
export function serverConfigSpec(name: ServiceName) {
  return {
    /** gRPC port. Default: the service's TOPOLOGY grpcPort. */
    GRPC_PORT: env.port(TOPOLOGY[name].grpcPort),
    /** Default 127.0.0.1. */
    HOST: env.string("127.0.0.1"),
    /** `istio`: leave retries and mTLS to Envoy. Default none. */
    TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
    /** Default info. */
    LOG_LEVEL: env.oneOf(LOG_LEVELS, "info"),
  };
}

/**
 * serverConfigSpec plus what a service behind the edge reads: its own SQLite database and the
 * shared secret of internal service tokens. Map the result with serviceBaseConfig.
 */
export function serviceConfigSpec(name: ServiceName) {
  return {
    ...serverConfigSpec(name),
    /** Default .data */
    TASKMESH_DATA_DIR: env.string(".data"),
    /** Default: $TASKMESH_DATA_DIR/<service>.db (serviceBaseConfig resolves it). */
    DB_PATH: env.string(""),
    /** Shared secret of internal service tokens, at least 32 characters. Required. */
    TASKMESH_SERVICE_SECRET: env.secret(32),
    /** How often the outbox reconciler checks recently published events against their stream, ms. Default 10000. */
    OUTBOX_RECONCILE_INTERVAL_MS: env.int({ fallback: 10_000, min: 100 }),
    /**
     * How long each consumer keeps the ids of the events it applied (its inbox), ms: at least an
     * hour (and twice the consumer's redelivery horizon, checked when it starts; InboxPruner says
     * why that keeps exactly-once). Default 604800000 (7 days).
     */
    INBOX_RETENTION_MS: env.int({ fallback: DEFAULT_INBOX_RETENTION_MS, min: 3_600_000 }),
  };
}

/** The users service's JWKS, to verify user tokens (JWKS_URL). Default: users on localhost. */
export function jwksUrlField() {
  return env.url(`http://127.0.0.1:${TOPOLOGY.users.httpPort}${JWKS_PATH}`);
}

/** The fields of serviceConfigSpec as a service's config names them. */
export interface ServiceBaseConfig {
  grpcPort: number;
  host: string;
  dataDir: string;
  /** DB_PATH, default $TASKMESH_DATA_DIR/<service>.db */
  dbPath: string;
  serviceSecret: string;
  mesh: "none" | "istio";
  logLevel: string;
  /** OUTBOX_RECONCILE_INTERVAL_MS */
  reconcileIntervalMs: number;
  /** INBOX_RETENTION_MS */
  inboxRetentionMs: number;
}

/** Maps the serviceConfigSpec part of a loaded config, resolving DB_PATH's default from the data dir. */
export function serviceBaseConfig(
  c: ConfigOf<ReturnType<typeof serviceConfigSpec>>,
  name: ServiceName,
): ServiceBaseConfig {
  return {
    grpcPort: c.GRPC_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, `${name}.db`),
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
    reconcileIntervalMs: c.OUTBOX_RECONCILE_INTERVAL_MS,
    inboxRetentionMs: c.INBOX_RETENTION_MS,
  };
}
