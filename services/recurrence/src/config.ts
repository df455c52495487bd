import { join } from "node:path";
import { ConfigError, env, loadConfig, natsUrlField, TOPOLOGY } from "@taskmesh/platform";

const spec = {
  /** gRPC port (health and reflection only). Default 50056. */
  GRPC_PORT: env.port(TOPOLOGY.recurrence.grpcPort),
  /** Default 127.0.0.1. */
  HOST: env.string("127.0.0.1"),
  /** Default .data */
  TASKMESH_DATA_DIR: env.string(".data"),
  /** Default: $TASKMESH_DATA_DIR/recurrence.db */
  DB_PATH: env.string(""),
  /** NATS server URL(s), comma-separated. Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /** The tasks service (CreateOccurrence). Default 127.0.0.1:50052. */
  TASKS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.tasks.grpcPort}`),
  /** Deadline of one CreateOccurrence call, in ms (100..60000). Default 5000. */
  TASKS_TIMEOUT_MS: env.int({ fallback: 5000, min: 100, max: 60_000 }),
  /** Shared secret of internal service tokens, at least 32 characters. Required. */
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

export interface RecurrenceConfig {
  grpcPort: number;
  host: string;
  dataDir: string;
  dbPath: string;
  natsUrl: string[];
  tasksAddr: string;
  tasksTimeoutMs: number;
  serviceSecret: string;
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the recurrence service's environment; a ConfigError names every bad variable. */
export function loadRecurrenceConfig(source: Record<string, string | undefined> = process.env): RecurrenceConfig {
  const c = loadConfig(spec, source);
  return {
    grpcPort: c.GRPC_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, "recurrence.db"),
    natsUrl: c.NATS_URL,
    tasksAddr: c.TASKS_ADDR,
    tasksTimeoutMs: c.TASKS_TIMEOUT_MS,
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
