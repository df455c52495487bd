import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import {
  type ConsumerStats,
  createLogger,
  createUserTokenVerifier,
  type FaultHooks,
  GrpcServer,
  type Logger,
  openDatabase,
  pingDatabase,
  register,
  remoteUserKeys,
  ServiceEvents,
  ServiceTokens,
  type UserTokenVerifier,
} from "@taskmesh/platform";
import { analyticsService } from "./analytics-service.js";
import { AnalyticsStore, MIGRATIONS } from "./analytics-store.js";
import type { AnalyticsConfig } from "./config.js";
import { ANALYTICS_STREAMS, consumers, PUBLISHES } from "./events.js";

export type { AnalyticsConfig } from "./config.js";
export { loadAnalyticsConfig } from "./config.js";

export interface AnalyticsDeps {
  /** Fault injection for the relay, the consumers (and the saga): the drills main.ts arms from TASKMESH_FAULT, or a test's hooks. Default: none. */
  faults?: FaultHooks;
  /** Default: a JSON logger named "analytics" at config.logLevel. */
  logger?: Logger;
  /** Verifies user tokens. Default: against the users JWKS at config.jwksUrl. */
  userTokens?: UserTokenVerifier;
  /** Current time in epoch ms (overdue, streaks). Default Date.now. */
  clock?: () => number;
  /** Ack wait of the consumers (redelivery after a lost ack), for tests. Default 30000 ms. */
  consumerAckWaitMs?: number;
}

export interface AnalyticsApp {
  /** Starts the consumers (NATS is connected in the background), then binds the gRPC port (0 picks one). */
  listen(): Promise<{ grpcPort: number }>;
  /** Stops serving, stops the consumers (the event in hand commits), closes NATS, then the database. Safe to call twice. */
  shutdown(): Promise<void>;
  /** The database's generation (part of the durable consumer names). */
  readonly generation: string;
  /** Counters of each stream's consumer, by stream name (zeros before listen()). */
  consumerStats(): Record<string, ConsumerStats>;
}

/**
 * The analytics service, wired but not listening: the read models in SQLite, fed by one durable
 * consumer per stream (TASKS, USERS) whose handler folds each event inside the inbox transaction,
 * and the public AnalyticsService (user token verified here).
 *
 * Readiness is the database only: the read models answer from what they hold while NATS is away
 * (a dashboard with slightly old numbers beats none), events wait in their streams meanwhile, and
 * the "nats" health entry and `as_of_time` tell how current the answers are.
 */
export function build(config: AnalyticsConfig, deps: AnalyticsDeps = {}): AnalyticsApp {
  const logger = deps.logger ?? createLogger("analytics", { level: config.logLevel });
  const db = openDatabase(config.dbPath, MIGRATIONS);
  const store = new AnalyticsStore(db);
  const grpc = new GrpcServer({
    name: "analytics",
    logger,
    services: [
      register(AnalyticsService, analyticsService({ store, ...(deps.clock ? { clock: deps.clock } : {}) }), {
        kind: "user",
      }),
    ],
    userTokens: deps.userTokens ?? createUserTokenVerifier(remoteUserKeys(config.jwksUrl)),
    serviceTokens: new ServiceTokens(config.serviceSecret, "analytics"),
    readiness: () => pingDatabase(db),
  });

  const events = new ServiceEvents({
    name: "analytics",
    servers: config.natsServers,
    db,
    logger,
    health: grpc.health,
    publishes: PUBLISHES,
    consumers: consumers(store, logger),
    ...(deps.consumerAckWaitMs ? { consumerOverrides: { ackWaitMs: deps.consumerAckWaitMs } } : {}),
    ...(deps.faults ? { faults: deps.faults } : {}),
    reconcile: { intervalMs: config.reconcileIntervalMs },
    retention: { horizonMs: config.inboxRetentionMs },
  });
  let stopped: Promise<void> | undefined;
  return {
    generation: store.generation,
    consumerStats() {
      return Object.fromEntries(ANALYTICS_STREAMS.map((s) => [s.name, events.consumerStats(s.name)]));
    },
    async listen() {
      if (!stopped) events.start();
      return { grpcPort: await grpc.listen(config.grpcPort, config.host) };
    },
    shutdown() {
      stopped ??= (async () => {
        await grpc.shutdown();
        await events.stop();
        db.close();
      })();
      return stopped;
    },
  };
}
