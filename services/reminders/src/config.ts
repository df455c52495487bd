import {
  env,
  loadConfig,
  natsUrlField,
  type ServiceBaseConfig,
  serviceBaseConfig,
  serviceConfigSpec,
} from "@taskmesh/platform";

/**
 * GRPC_PORT (ReminderInternalService, health, reflection; default 50055), HOST,
 * TASKMESH_DATA_DIR, DB_PATH, TASKMESH_SERVICE_SECRET (verifies ListSchedule callers),
 * TASKMESH_MESH and LOG_LEVEL come from serviceConfigSpec.
 */
const spec = {
  ...serviceConfigSpec("reminders"),
  /** NATS server URL(s), comma-separated. Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /**
   * Longest sleep of the scheduler between two looks at its timers, in ms (1000..3600000). It
   * normally wakes at the next fire time; the cap bounds the damage of a wall-clock jump.
   * Default 60000.
   */
  SCHEDULER_MAX_SLEEP_MS: env.int({ fallback: 60_000, min: 1000, max: 3_600_000 }),
};

export interface RemindersConfig extends ServiceBaseConfig {
  natsServers: string[];
  schedulerMaxSleepMs: number;
}

/** Reads and checks the reminders service's environment; a ConfigError names every bad variable. */
export function loadRemindersConfig(source: Record<string, string | undefined> = process.env): RemindersConfig {
  const c = loadConfig(spec, source);
  return {
    ...serviceBaseConfig(c, "reminders"),
    natsServers: c.NATS_URL,
    schedulerMaxSleepMs: c.SCHEDULER_MAX_SLEEP_MS,
  };
}
