import {
  jwksUrlField,
  loadConfig,
  natsUrlField,
  type ServiceBaseConfig,
  serviceBaseConfig,
  serviceConfigSpec,
} from "@taskmesh/platform";

/**
 * GRPC_PORT (AnalyticsService, health, reflection; default 50054), HOST, TASKMESH_DATA_DIR,
 * DB_PATH (default $TASKMESH_DATA_DIR/analytics.db; a database made by the rebuild command works
 * too), TASKMESH_SERVICE_SECRET (required, like in every service, although analytics serves no
 * internal method today), TASKMESH_MESH and LOG_LEVEL come from serviceConfigSpec.
 */
const spec = {
  ...serviceConfigSpec("analytics"),
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /** The users service's JWKS, to verify user tokens. Default: users on localhost. */
  JWKS_URL: jwksUrlField(),
};

export interface AnalyticsConfig extends ServiceBaseConfig {
  /** NATS_URL split into its servers. */
  natsServers: string[];
  jwksUrl: string;
}

/** Reads and checks the analytics service's environment; a ConfigError names every bad variable. */
export function loadAnalyticsConfig(source: Record<string, string | undefined> = process.env): AnalyticsConfig {
  const c = loadConfig(spec, source);
  return {
    ...serviceBaseConfig(c, "analytics"),
    natsServers: c.NATS_URL,
    jwksUrl: c.JWKS_URL,
  };
}
