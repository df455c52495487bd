import { TaskInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  createGrpcClient,
  createLogger,
  deletedUserId,
  EventConsumer,
  GrpcServer,
  type Logger,
  NatsLink,
  natsReady,
  openDatabase,
  pingDatabase,
  ServiceTokens,
} from "@taskmesh/platform";
import type { RecurrenceConfig } from "./config.js";
import { CONSUMERS } from "./events.js";
import { MIGRATIONS, OccurrencesStore } from "./occurrences-store.js";
import { type Decision, taskCompletedHandler } from "./task-completed.js";

export type { RecurrenceConfig } from "./config.js";
export { loadRecurrenceConfig } from "./config.js";

export interface RecurrenceDeps {
  /** Default: a JSON logger named "recurrence" at config.logLevel. */
  logger?: Logger;
  /** Redelivery delay of a transient failure (tasks unavailable). Default { initialMs: 1000, maxMs: 60000 }. */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** Ack wait and deliveries before dead-lettering, for tests. Defaults: the platform's (30 s, 5). */
  consumer?: { ackWaitMs?: number; maxDeliver?: number };
}

export interface RecurrenceApp {
  /** Binds the gRPC port (health + reflection; config.grpcPort, 0 picks a free one) and starts consuming. */
  listen(): Promise<{ grpcPort: number }>;
  /** Stops consuming (the event in hand finishes), stops serving, closes NATS, then the database. Safe to call twice. */
  shutdown(): Promise<void>;
  /** Consumer counters (applied, duplicates, retried, deadLettered) of the task.completed consumer. */
  stats(): { taskCompleted: EventConsumer<Decision>["stats"] };
}

/**
 * The recurrence service, wired but not listening: a durable consumer of task.completed that
 * creates each recurring task's next occurrence through tasks' CreateOccurrence, its processed
 * occurrences and inbox in SQLite, and a gRPC server with health and reflection only (readiness:
 * the database answers and NATS is connected, since all its work arrives over NATS).
 */
export function build(config: RecurrenceConfig, deps: RecurrenceDeps = {}): RecurrenceApp {
  const logger = deps.logger ?? createLogger("recurrence", { level: config.logLevel });
  const db = openDatabase(config.dbPath, MIGRATIONS);
  const store = new OccurrencesStore(db);
  const link = new NatsLink({ servers: config.natsUrl, name: "recurrence", logger });
  const serviceTokens = new ServiceTokens(config.serviceSecret, "recurrence");
  const tasks = createGrpcClient(TaskInternalService, {
    address: config.tasksAddr,
    defaultTimeoutMs: config.tasksTimeoutMs,
    // Every call carries an idempotency key, so a retried CreateOccurrence creates nothing new.
    // In the mesh Envoy retries instead, so attempts do not multiply.
    retries: config.mesh !== "istio",
    retryableMethods: ["CreateOccurrence"],
    metadata: async () => ({ authorization: `Bearer ${await serviceTokens.token()}` }),
  });

  const consumerOptions = {
    link,
    db,
    logger,
    ...(deps.retryBackoff ? { retryBackoff: deps.retryBackoff } : {}),
  };
  const taskCompleted = new EventConsumer<Decision>({
    ...consumerOptions,
    stream: CONSUMERS.taskCompleted.stream,
    consumer: { ...CONSUMERS.taskCompleted.consumer, ...deps.consumer },
    handler: taskCompletedHandler({ store, tasks, logger, callTimeoutMs: config.tasksTimeoutMs }),
  });
  const userDeleted = new EventConsumer({
    ...consumerOptions,
    stream: CONSUMERS.userDeleted.stream,
    consumer: { ...CONSUMERS.userDeleted.consumer, ...deps.consumer },
    handler: (event) => {
      const userId = deletedUserId(event);
      const n = store.purgeUser(userId);
      logger.info({ userId, rows: n }, "user's processed occurrences dropped");
    },
  });

  const grpc = new GrpcServer({
    name: "recurrence",
    logger,
    services: [],
    readiness: () => pingDatabase(db) && natsReady(link),
  });

  let stopped: Promise<void> | undefined;
  return {
    async listen() {
      const grpcPort = await grpc.listen(config.grpcPort, config.host);
      taskCompleted.start();
      userDeleted.start();
      return { grpcPort };
    },
    stats: () => ({ taskCompleted: taskCompleted.stats }),
    shutdown() {
      stopped ??= (async () => {
        await Promise.all([taskCompleted.stop(), userDeleted.stop()]);
        await grpc.shutdown();
        tasks.close();
        await link.close();
        db.close();
      })();
      return stopped;
    },
  };
}
