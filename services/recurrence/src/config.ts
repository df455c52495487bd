import {
  env,
  loadConfig,
  natsUrlField,
  type ServiceBaseConfig,
  serviceBaseConfig,
  serviceConfigSpec,
  TOPOLOGY,
} from "@taskmesh/platform";

/**
 * GRPC_PORT (health and reflection only; default 50056), HOST, TASKMESH_DATA_DIR, DB_PATH,
 * TASKMESH_SERVICE_SECRET, TASKMESH_MESH and LOG_LEVEL come from serviceConfigSpec.
 */
const spec = {
  ...serviceConfigSpec("recurrence"),
  /** NATS server URL(s), comma-separated. Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
  /** The tasks service (CreateOccurrence). Default 127.0.0.1:50052. */
  TASKS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.tasks.grpcPort}`),
  /** Deadline of one CreateOccurrence call, in ms (100..60000). Default 5000. */
  TASKS_TIMEOUT_MS: env.int({ fallback: 5000, min: 100, max: 60_000 }),
};

export interface RecurrenceConfig extends ServiceBaseConfig {
  natsServers: string[];
  tasksAddr: string;
  tasksTimeoutMs: number;
}

/** Reads and checks the recurrence service's environment; a ConfigError names every bad variable. */
export function loadRecurrenceConfig(source: Record<string, string | undefined> = process.env): RecurrenceConfig {
  const c = loadConfig(spec, source);
  return {
    ...serviceBaseConfig(c, "recurrence"),
    natsServers: c.NATS_URL,
    tasksAddr: c.TASKS_ADDR,
    tasksTimeoutMs: c.TASKS_TIMEOUT_MS,
  };
}
