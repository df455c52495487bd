import { TaskInternalService, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  createLogger,
  createUserTokenVerifier,
  GrpcServer,
  type Logger,
  openDatabase,
  pingDatabase,
  register,
  ServiceTokens,
  type UserTokenVerifier,
} from "@taskmesh/platform";
import { createRemoteJWKSet } from "jose";
import type { TasksConfig } from "./config.js";
import { taskInternalService } from "./task-internal-service.js";
import { taskService } from "./task-service.js";
import { MIGRATIONS, TasksStore } from "./tasks-store.js";

export type { TasksConfig } from "./config.js";
export { loadTasksConfig } from "./config.js";

export interface TasksDeps {
  /** Default: a JSON logger named "tasks" at config.logLevel. */
  logger?: Logger;
  /**
   * Verifies user tokens. Default: against the users JWKS at config.jwksUrl (jose's remote key
   * set caches the keys and re-fetches on an unknown kid, so key rotation needs no restart).
   */
  userTokens?: UserTokenVerifier;
  /** Current time in epoch ms. Default Date.now. */
  clock?: () => number;
}

export interface TasksApp {
  /** Binds the gRPC port (config.grpcPort; 0 picks a free one). */
  listen(): Promise<{ grpcPort: number }>;
  /** Stops accepting, drains in-flight calls, closes the database. Safe to call twice. */
  shutdown(): Promise<void>;
}

/**
 * The tasks service, wired but not listening: tasks and idempotency keys in SQLite, the public
 * TaskService for users (token verified here, not trusted from the gateway) and the internal
 * TaskInternalService for other services (service token).
 */
export function build(config: TasksConfig, deps: TasksDeps = {}): TasksApp {
  const logger = deps.logger ?? createLogger("tasks", { level: config.logLevel });
  const db = openDatabase(config.dbPath, MIGRATIONS);
  const store = new TasksStore(db);
  const serviceDeps = {
    store,
    maxTasksPerUser: config.maxTasksPerUser,
    ...(deps.clock ? { clock: deps.clock } : {}),
  };
  const grpc = new GrpcServer({
    name: "tasks",
    logger,
    services: [
      register(TaskService, taskService(serviceDeps), { kind: "user" }),
      register(TaskInternalService, taskInternalService(serviceDeps), { kind: "internal" }),
    ],
    userTokens: deps.userTokens ?? createUserTokenVerifier(createRemoteJWKSet(new URL(config.jwksUrl))),
    serviceTokens: new ServiceTokens(config.serviceSecret, "tasks"),
    readiness: () => pingDatabase(db),
  });

  let stopped: Promise<void> | undefined;
  return {
    async listen() {
      return { grpcPort: await grpc.listen(config.grpcPort, config.host) };
    },
    shutdown() {
      stopped ??= (async () => {
        await grpc.shutdown();
        db.close();
      })();
      return stopped;
    },
  };
}
