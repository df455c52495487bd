import { join } from "node:path";
import { ConfigError, env, loadConfig, natsUrlField, TOPOLOGY } from "@taskmesh/platform";

const spec = {
  /** gRPC port (ReminderInternalService, health, reflection). Default 50055. */
  GRPC_PORT: env.port(TOPOLOGY.reminders.grpcPort),
  /** Default 127.0.0.1. */
  HOST: env.string("127.0.0.1"),
  /** Default .data */
  TASKMESH_DATA_DIR: env.string(".data"),
  /** Default: $TASKMESH_DATA_DIR/reminders.db */
  DB_PATH: env.string(""),
  /** NATS server URL(s), comma-separated. Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /**
   * Longest sleep of the scheduler between two looks at its timers, in ms (1000..3600000). It
   * normally wakes at the next fire time; the cap bounds the damage of a wall-clock jump.
   * Default 60000.
   */
  SCHEDULER_MAX_SLEEP_MS: env.int({ fallback: 60_000, min: 1000, max: 3_600_000 }),
  /** Shared secret of internal service tokens (verifies ListSchedule callers), at least 32 characters. Required. */
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

export interface RemindersConfig {
  grpcPort: number;
  host: string;
  dataDir: string;
  dbPath: string;
  natsUrl: string[];
  schedulerMaxSleepMs: number;
  serviceSecret: string;
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the reminders service's environment; a ConfigError names every bad variable. */
export function loadRemindersConfig(source: Record<string, string | undefined> = process.env): RemindersConfig {
  const c = loadConfig(spec, source);
  return {
    grpcPort: c.GRPC_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, "reminders.db"),
    natsUrl: c.NATS_URL,
    schedulerMaxSleepMs: c.SCHEDULER_MAX_SLEEP_MS,
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
