import { TaskInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  type ConsumerStats,
  createGrpcClient,
  createLogger,
  type FaultHooks,
  GrpcServer,
  type Logger,
  openDatabase,
  pingDatabase,
  ServiceEvents,
  ServiceTokens,
} from "@taskmesh/platform";
import type { RecurrenceConfig } from "./config.js";
import { consumers, PUBLISHES } from "./events.js";
import { MIGRATIONS, OccurrencesStore } from "./occurrences-store.js";

export type { RecurrenceConfig } from "./config.js";
export { loadRecurrenceConfig } from "./config.js";

export interface RecurrenceDeps {
  /** Fault injection for the relay, the consumers (and the saga): the drills main.ts arms from TASKMESH_FAULT, or a test's hooks. Default: none. */
  faults?: FaultHooks;
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
  stats(): { taskCompleted: Readonly<ConsumerStats> };
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

  const grpc = new GrpcServer({
    name: "recurrence",
    logger,
    services: [],
    readiness: () => pingDatabase(db) && events.natsReady,
  });
  const events = new ServiceEvents({
    name: "recurrence",
    servers: config.natsServers,
    db,
    logger,
    health: grpc.health,
    // Readiness covers NATS: seen at once when the link connects (at start too), not up to 2 s later.
    onConnect: () => void grpc.checkReadiness(),
    publishes: PUBLISHES,
    consumers: consumers({ store, tasks, logger, callTimeoutMs: config.tasksTimeoutMs }),
    ...(deps.consumer ? { consumerOverrides: deps.consumer } : {}),
    ...(deps.retryBackoff ? { retryBackoff: deps.retryBackoff } : {}),
    ...(deps.faults ? { faults: deps.faults } : {}),
    reconcile: { intervalMs: config.reconcileIntervalMs },
    retention: { horizonMs: config.inboxRetentionMs },
  });

  let stopped: Promise<void> | undefined;
  return {
    async listen() {
      const grpcPort = await grpc.listen(config.grpcPort, config.host);
      events.start();
      return { grpcPort };
    },
    stats: () => ({ taskCompleted: events.consumerStats("taskCompleted") }),
    shutdown() {
      stopped ??= (async () => {
        await events.stopConsumers();
        await grpc.shutdown();
        tasks.close();
        await events.stop();
        db.close();
      })();
      return stopped;
    },
  };
}
