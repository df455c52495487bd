import { ReminderInternalService } from "@taskmesh/gen/taskmesh/reminders/v1/reminders_pb";
import {
  type ConsumerStats,
  createLogger,
  type FaultHooks,
  GrpcServer,
  type Logger,
  meter,
  openDatabase,
  pingDatabase,
  type RelayStats,
  register,
  ServiceEvents,
  ServiceTokens,
} from "@taskmesh/platform";
import type { RemindersConfig } from "./config.js";
import { consumers, PUBLISHES } from "./events.js";
import { reminderInternalService } from "./reminder-internal-service.js";
import { MIGRATIONS, RemindersStore } from "./reminders-store.js";
import { Scheduler } from "./scheduler.js";

export type { RemindersConfig } from "./config.js";
export { loadRemindersConfig } from "./config.js";

export interface RemindersDeps {
  /** Fault injection for the relay, the consumers (and the saga): the drills main.ts arms from TASKMESH_FAULT, or a test's hooks. Default: none. */
  faults?: FaultHooks;
  /** Default: a JSON logger named "reminders" at config.logLevel. */
  logger?: Logger;
  /**
   * The clock timers are derived and fired by, epoch ms. Default Date.now. Tests pass their own,
   * move it, and call `tick()` instead of sleeping.
   */
  clock?: () => number;
  /** Redelivery delay of a transient failure. Default { initialMs: 1000, maxMs: 60000 }. */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** Ack wait and deliveries before dead-lettering, for tests. Defaults: the platform's (30 s, 5). */
  consumer?: { ackWaitMs?: number; maxDeliver?: number };
  /** How often the outbox is checked without a wake-up. Default 1000 ms. */
  relayPollIntervalMs?: number;
}

export interface RemindersApp {
  /**
   * Binds the gRPC port (config.grpcPort; 0 picks a free one), starts the scheduler (timers that
   * came due while the service was down fire at once), the relay and the consumers (NATS is
   * connected in the background).
   */
  listen(): Promise<{ grpcPort: number }>;
  /**
   * Fires every timer due at the clock's now, returns how many fired. The scheduler calls it by
   * itself; tests call it after moving an injected clock.
   */
  tick(): number;
  /** Stops serving, consuming and firing, lets the relay publish what it can, closes NATS, then the database. Safe to call twice. */
  shutdown(): Promise<void>;
  /** Counters: consumers, relay, timers fired, events waiting in the outbox. */
  stats(): {
    tasks: Readonly<ConsumerStats>;
    userDeleted: Readonly<ConsumerStats>;
    relay: Readonly<RelayStats>;
    fired: number;
    backlog: number;
  };
}

/**
 * The reminders service, wired but not listening: durable timers in SQLite derived from task
 * events, a scheduler that fires them as reminder.due / task.due through the outbox, and a gRPC
 * server with the internal ListSchedule, health (ready = the database answers and NATS is
 * connected: its work arrives over NATS and leaves over NATS) and reflection.
 */
export function build(config: RemindersConfig, deps: RemindersDeps = {}): RemindersApp {
  const logger = deps.logger ?? createLogger("reminders", { level: config.logLevel });
  const now = deps.clock ?? Date.now;
  const db = openDatabase(config.dbPath, MIGRATIONS);
  const store = new RemindersStore(db);
  const scheduler = new Scheduler({ db, store, logger, now, maxSleepMs: config.schedulerMaxSleepMs });
  const grpc = new GrpcServer({
    name: "reminders",
    logger,
    services: [register(ReminderInternalService, reminderInternalService(store), { kind: "internal" })],
    serviceTokens: new ServiceTokens(config.serviceSecret, "reminders"),
    readiness: () => pingDatabase(db) && events.natsReady,
  });
  const events = new ServiceEvents({
    name: "reminders",
    servers: config.natsServers,
    db,
    logger,
    health: grpc.health,
    // Readiness covers NATS: seen at once when the link connects (at start too), not up to 2 s later.
    onConnect: () => void grpc.checkReadiness(),
    publishes: PUBLISHES,
    consumers: consumers({ store, now, logger, onScheduleChanged: () => scheduler.wake() }),
    ...(deps.consumer ? { consumerOverrides: deps.consumer } : {}),
    ...(deps.retryBackoff ? { retryBackoff: deps.retryBackoff } : {}),
    ...(deps.relayPollIntervalMs ? { relay: { pollIntervalMs: deps.relayPollIntervalMs } } : {}),
    ...(deps.faults ? { faults: deps.faults } : {}),
    reconcile: { intervalMs: config.reconcileIntervalMs },
    retention: { horizonMs: config.inboxRetentionMs },
  });

  // taskmesh_reminders_pending: timers not yet fired, read at scrape time (one count over the
  // partial index of pending timers). Created in listen(), i.e. after telemetry started (before
  // that meter() is the API's no-op).
  let stopMetrics = () => {};
  const registerMetrics = () => {
    const gauge = meter().createObservableGauge("taskmesh.reminders.pending", {
      description: "Timers (reminders and due times) scheduled and not yet fired",
    });
    const observe = (r: { observe(v: number): void }) => {
      if (db.open) r.observe(store.pendingCount());
    };
    gauge.addCallback(observe);
    stopMetrics = () => gauge.removeCallback(observe);
  };

  let started = false;
  let stopped: Promise<void> | undefined;
  return {
    async listen() {
      const grpcPort = await grpc.listen(config.grpcPort, config.host);
      if (!started) {
        started = true;
        registerMetrics();
        scheduler.start();
        events.start();
      }
      return { grpcPort };
    },
    tick: () => scheduler.tick(),
    stats: () => ({
      tasks: events.consumerStats("tasks"),
      userDeleted: events.consumerStats("userDeleted"),
      relay: events.relayStats,
      fired: scheduler.fired,
      backlog: events.backlog(),
    }),
    shutdown() {
      stopped ??= (async () => {
        await grpc.shutdown();
        stopMetrics();
        await events.stopConsumers();
        scheduler.stop();
        // The relay publishes what it can for a few seconds; the rest waits in the outbox for the next start.
        await events.stop();
        db.close();
      })();
      return stopped;
    },
  };
}
