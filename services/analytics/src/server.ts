import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import {
  type ConsumerStats,
  createLogger,
  createUserTokenVerifier,
  EventConsumer,
  GrpcServer,
  type Logger,
  NatsLink,
  natsReady,
  openDatabase,
  pingDatabase,
  register,
  remoteUserKeys,
  ServiceTokens,
  type UserTokenVerifier,
} from "@taskmesh/platform";
import { analyticsService } from "./analytics-service.js";
import { AnalyticsStore, MIGRATIONS } from "./analytics-store.js";
import type { AnalyticsConfig } from "./config.js";
import { ANALYTICS_STREAMS, consumerFor, foldHandler } from "./events.js";

export type { AnalyticsConfig } from "./config.js";
export { loadAnalyticsConfig } from "./config.js";

/** Health entry mirroring the NATS connection (readiness itself is the database only, see build). */
export const NATS_HEALTH_SERVICE = "nats";

export interface AnalyticsDeps {
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

  let nats: { link: NatsLink; consumers: Map<string, EventConsumer>; stopMirror: () => void } | undefined;
  let stopped: Promise<void> | undefined;
  return {
    generation: store.generation,
    consumerStats() {
      const out: Record<string, ConsumerStats> = {};
      for (const s of ANALYTICS_STREAMS) {
        out[s.name] = nats?.consumers.get(s.name)?.stats ?? { applied: 0, duplicates: 0, retried: 0, deadLettered: 0 };
      }
      return out;
    },
    async listen() {
      if (!nats && !stopped) {
        const link = new NatsLink({ servers: config.natsServers, name: "analytics", logger });
        const consumers = new Map<string, EventConsumer>();
        for (const stream of ANALYTICS_STREAMS) {
          const consumer = new EventConsumer({
            link,
            db,
            logger,
            stream,
            consumer: {
              ...consumerFor(stream, store.generation),
              ...(deps.consumerAckWaitMs ? { ackWaitMs: deps.consumerAckWaitMs } : {}),
            },
            handler: foldHandler(store, logger),
          });
          consumer.start();
          consumers.set(stream.name, consumer);
        }
        const mirror = () => grpc.health.setStatus(NATS_HEALTH_SERVICE, natsReady(link) ? "SERVING" : "NOT_SERVING");
        mirror();
        const unsubscribe = link.onConnect(mirror);
        const timer = setInterval(mirror, 2000);
        timer.unref();
        nats = {
          link,
          consumers,
          stopMirror: () => {
            clearInterval(timer);
            unsubscribe();
          },
        };
      }
      return { grpcPort: await grpc.listen(config.grpcPort, config.host) };
    },
    shutdown() {
      stopped ??= (async () => {
        await grpc.shutdown();
        if (nats) {
          nats.stopMirror();
          await Promise.all([...nats.consumers.values()].map((c) => c.stop()));
          await nats.link.close();
        }
        db.close();
      })();
      return stopped;
    },
  };
}
