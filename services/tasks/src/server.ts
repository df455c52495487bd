import {
  CalendarFeedInternalService,
  TaskInternalService,
  TaskService,
} from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  type ConsumerStats,
  createLogger,
  createUserTokenVerifier,
  type FaultHooks,
  GrpcServer,
  type Logger,
  openDatabase,
  pingDatabase,
  type RelayStats,
  register,
  remoteUserKeys,
  ServiceEvents,
  ServiceTokens,
  type UserTokenVerifier,
  WalSync,
  type WalSyncOptions,
} from "@taskmesh/platform";
import { calendarFeedInternalService, calendarFeedMethods } from "./calendar-feed.js";
import type { TasksConfig } from "./config.js";
import { consumers, PUBLISHES } from "./events.js";
import { ProjectFeed, publishingAfter, publishingChanges } from "./project-feed.js";
import { taskInternalService } from "./task-internal-service.js";
import { taskService } from "./task-service.js";
import { MIGRATIONS, TasksStore } from "./tasks-store.js";

export type { TasksConfig } from "./config.js";
export { loadTasksConfig } from "./config.js";

export interface TasksDeps {
  /** Fault injection for the relay, the consumers (and the saga): the drills main.ts arms from TASKMESH_FAULT, or a test's hooks. Default: none. */
  faults?: FaultHooks;
  /** Default: a JSON logger named "tasks" at config.logLevel. */
  logger?: Logger;
  /**
   * Verifies user tokens. Default: against the users JWKS at config.jwksUrl (jose's remote key
   * set caches the keys and re-fetches on an unknown kid, so key rotation needs no restart).
   */
  userTokens?: UserTokenVerifier;
  /** Current time in epoch ms. Default Date.now. */
  clock?: () => number;
  /** How often the outbox backlog is logged while events wait. Default 5000 ms. */
  outboxReportIntervalMs?: number;
  /** Ack wait of the user.deleted consumer (redelivery after a lost ack). Default 30000 ms. */
  consumerAckWaitMs?: number;
  /** Options of the WalSync CreateTask commits through (a test holds its fdatasync). Default: WalSync's. */
  walSync?: WalSyncOptions;
}

/** The state of the service's events. */
export interface TasksEvents {
  /** Events committed but not yet acknowledged by JetStream. */
  backlog(): number;
  /** True while the NATS connection is up (false before listen()). */
  readonly natsConnected: boolean;
  /** Publish counters of the relay since listen(). */
  readonly relay: Readonly<RelayStats>;
  /** Counters of the user.deleted consumer since listen(). */
  readonly userDeleted: Readonly<ConsumerStats>;
}

export interface TasksApp {
  /**
   * Starts the outbox relay and the user.deleted consumer (NATS is connected in the background:
   * start-up never waits for it), then binds the gRPC port (config.grpcPort; 0 picks a free one).
   */
  listen(): Promise<{ grpcPort: number }>;
  /**
   * Stops accepting and drains in-flight calls, stops the consumer (the event in hand finishes)
   * and the relay (it publishes what it can for a few seconds; the rest waits in the outbox),
   * closes NATS, then the database. Safe to call twice.
   */
  shutdown(): Promise<void>;
  /** Outbox backlog, NATS state, consumer counters. */
  readonly events: TasksEvents;
  /** Open WatchProject streams. */
  readonly projectWatchers: number;
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
  const walSync = new WalSync(db, deps.walSync);
  // WatchProject's fan-out, fed after each committing call (one process per database: project-feed.ts).
  const feed = new ProjectFeed();
  const live = <T extends object>(impl: T) => publishingChanges(impl, db, feed);
  const serviceDeps = {
    store,
    walSync,
    maxTasksPerUser: config.maxTasksPerUser,
    maxProjectsPerUser: config.maxProjectsPerUser,
    maxLabelsPerUser: config.maxLabelsPerUser,
    ...(deps.clock ? { clock: deps.clock } : {}),
    feed,
  };
  const grpc = new GrpcServer({
    name: "tasks",
    logger,
    services: [
      register(TaskService, live({ ...taskService(serviceDeps), ...calendarFeedMethods(serviceDeps) }), {
        kind: "user",
      }),
      register(TaskInternalService, live(taskInternalService(serviceDeps)), { kind: "internal" }),
      // No token: the feed secret in the request is the credential (the calendar app that holds
      // the URL has nothing else). Only the gateway may reach it in the mesh (AuthorizationPolicy).
      register(CalendarFeedInternalService, calendarFeedInternalService(serviceDeps), {
        kind: "user",
        anonymous: ["renderCalendarFeed"],
      }),
    ],
    userTokens: deps.userTokens ?? createUserTokenVerifier(remoteUserKeys(config.jwksUrl)),
    serviceTokens: new ServiceTokens(config.serviceSecret, "tasks"),
    // The database only: with NATS away writes still commit (their events wait in the outbox)
    // and user.deleted waits in its stream, so going unready would refuse writes that can be
    // taken. NATS has its own health entry ("nats") and the backlog is logged.
    readiness: () => pingDatabase(db),
  });

  const events = new ServiceEvents({
    name: "tasks",
    servers: config.natsServers,
    db,
    logger,
    health: grpc.health,
    publishes: PUBLISHES,
    relay: { walSync },
    consumers: consumers({
      forgetUser: (userId) => publishingAfter(db, feed, () => store.forgetUser(userId, (deps.clock ?? Date.now)())),
      logger,
    }),
    ...(deps.consumerAckWaitMs ? { consumerOverrides: { ackWaitMs: deps.consumerAckWaitMs } } : {}),
    ...(deps.outboxReportIntervalMs ? { outboxReportIntervalMs: deps.outboxReportIntervalMs } : {}),
    ...(deps.faults ? { faults: deps.faults } : {}),
    reconcile: { intervalMs: config.reconcileIntervalMs },
    retention: { horizonMs: config.inboxRetentionMs },
  });
  let stopped: Promise<void> | undefined;
  return {
    get projectWatchers() {
      return feed.watchers;
    },
    events: {
      backlog: () => store.unpublishedEvents(),
      get natsConnected() {
        return events.natsConnected;
      },
      get relay() {
        return events.relayStats;
      },
      get userDeleted() {
        return events.consumerStats("userDeleted");
      },
    },
    async listen() {
      if (!stopped) events.start();
      return { grpcPort: await grpc.listen(config.grpcPort, config.host) };
    },
    shutdown() {
      stopped ??= (async () => {
        await grpc.shutdown();
        await events.stop();
        walSync.close();
        db.close();
      })();
      return stopped;
    },
  };
}
