import { join } from "node:path";
import { ConfigError, env, JWKS_PATH, loadConfig, natsUrlField, TOPOLOGY } from "@taskmesh/platform";

const spec = {
  /** gRPC port (AnalyticsService, health, reflection). Default 50054. */
  GRPC_PORT: env.port(TOPOLOGY.analytics.grpcPort),
  /** Default 127.0.0.1. */
  HOST: env.string("127.0.0.1"),
  /** Default .data */
  TASKMESH_DATA_DIR: env.string(".data"),
  /** Default: $TASKMESH_DATA_DIR/analytics.db (a database made by the rebuild command works too). */
  DB_PATH: env.string(""),
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /** The users service's JWKS, to verify user tokens. Default: users on localhost. */
  JWKS_URL: env.url(`http://127.0.0.1:${TOPOLOGY.users.httpPort}${JWKS_PATH}`),
  /**
   * Shared secret of internal service tokens, at least 32 characters. Required, like in every
   * service, although analytics serves no internal method today.
   */
  TASKMESH_SERVICE_SECRET: {
    parse(name: string, raw: string | undefined): string {
      const value = env.string().parse(name, raw);
      if (value.length < 32) throw new ConfigError(`${name} must be at least 32 characters`);
      return value;
    },
  },
  TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
  LOG_LEVEL: env.oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const, "info"),
};

export interface AnalyticsConfig {
  grpcPort: number;
  host: string;
  dataDir: string;
  dbPath: string;
  /** NATS_URL split into its servers. */
  natsServers: string[];
  jwksUrl: string;
  serviceSecret: string;
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the analytics service's environment; a ConfigError names every bad variable. */
export function loadAnalyticsConfig(source: Record<string, string | undefined> = process.env): AnalyticsConfig {
  const c = loadConfig(spec, source);
  return {
    grpcPort: c.GRPC_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, "analytics.db"),
    natsServers: c.NATS_URL,
    jwksUrl: c.JWKS_URL,
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
