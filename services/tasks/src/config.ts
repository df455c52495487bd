import {
  env,
  jwksUrlField,
  loadConfig,
  natsUrlField,
  type ServiceBaseConfig,
  serviceBaseConfig,
  serviceConfigSpec,
} from "@taskmesh/platform";

/**
 * GRPC_PORT (TaskService, TaskInternalService, health, reflection; default 50052), HOST,
 * TASKMESH_DATA_DIR, DB_PATH, TASKMESH_SERVICE_SECRET, TASKMESH_MESH and LOG_LEVEL come from
 * serviceConfigSpec.
 */
const spec = {
  ...serviceConfigSpec("tasks"),
  /** The users service's JWKS, to verify user tokens. Default: users on localhost. */
  JWKS_URL: jwksUrlField(),
  /**
   * Most tasks one user may hold (1..1,000,000). Default 100000: what `npm run bench -- --scale
   * 1000,100000` measures. A create checks it with one primary-key read (the trigger-kept count of
   * migration 21) and ListTasks, GetTask and CompleteTask read by index, so they do not grow with
   * the user; what does grow is bounded by it (README, Performance: SearchTasks, the calendar feed,
   * deleting the user or a project in one transaction).
   */
  MAX_TASKS_PER_USER: env.int({ fallback: 100_000, min: 1, max: 1_000_000 }),
  /** Most projects one user may hold, the Inbox included (2..10,000). Default 300. */
  MAX_PROJECTS_PER_USER: env.int({ fallback: 300, min: 2, max: 10_000 }),
  /** Most labels one user may hold (1..10,000). Default 500. */
  MAX_LABELS_PER_USER: env.int({ fallback: 500, min: 1, max: 10_000 }),
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: natsUrlField(),
};

export interface TasksConfig extends ServiceBaseConfig {
  jwksUrl: string;
  maxTasksPerUser: number;
  maxProjectsPerUser: number;
  maxLabelsPerUser: number;
  /** NATS_URL split into its servers. */
  natsServers: string[];
}

/** Reads and checks the tasks service's environment; a ConfigError names every bad variable. */
export function loadTasksConfig(source: Record<string, string | undefined> = process.env): TasksConfig {
  const c = loadConfig(spec, source);
  return {
    ...serviceBaseConfig(c, "tasks"),
    jwksUrl: c.JWKS_URL,
    maxTasksPerUser: c.MAX_TASKS_PER_USER,
    maxProjectsPerUser: c.MAX_PROJECTS_PER_USER,
    maxLabelsPerUser: c.MAX_LABELS_PER_USER,
    natsServers: c.NATS_URL,
  };
}
