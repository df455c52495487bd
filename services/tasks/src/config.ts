import { join } from "node:path";
import { ConfigError, env, JWKS_PATH, loadConfig, natsUrlField, TOPOLOGY } from "@taskmesh/platform";

const spec = {
  /** gRPC port (TaskService, TaskInternalService, health, reflection). Default 50052. */
  GRPC_PORT: env.port(TOPOLOGY.tasks.grpcPort),
  /** Default 127.0.0.1. */
  HOST: env.string("127.0.0.1"),
  /** Default .data */
  TASKMESH_DATA_DIR: env.string(".data"),
  /** Default: $TASKMESH_DATA_DIR/tasks.db */
  DB_PATH: env.string(""),
  /** The users service's JWKS, to verify user tokens. Default: users on localhost. */
  JWKS_URL: env.url(`http://127.0.0.1:${TOPOLOGY.users.httpPort}${JWKS_PATH}`),
  /** Shared secret of internal service tokens, at least 32 characters. Required. */
  TASKMESH_SERVICE_SECRET: {
    parse(name: string, raw: string | undefined): string {
      const value = env.string().parse(name, raw);
      if (value.length < 32) throw new ConfigError(`${name} must be at least 32 characters`);
      return value;
    },
  },
  /** Most tasks one user may hold (1..1,000,000). Default 10000. */
  MAX_TASKS_PER_USER: env.int({ fallback: 10_000, min: 1, max: 1_000_000 }),
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
  LOG_LEVEL: env.oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const, "info"),
};

export interface TasksConfig {
  grpcPort: number;
  host: string;
  dataDir: string;
  dbPath: string;
  jwksUrl: string;
  serviceSecret: string;
  maxTasksPerUser: number;
  /** NATS_URL split into its servers. */
  natsServers: string[];
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the tasks service's environment; a ConfigError names every bad variable. */
export function loadTasksConfig(source: Record<string, string | undefined> = process.env): TasksConfig {
  const c = loadConfig(spec, source);
  return {
    grpcPort: c.GRPC_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, "tasks.db"),
    jwksUrl: c.JWKS_URL,
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    maxTasksPerUser: c.MAX_TASKS_PER_USER,
    natsServers: c.NATS_URL,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
