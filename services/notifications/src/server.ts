import { dirname } from "node:path";
import {
  NotificationInternalService,
  NotificationService,
} from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { UserInternalService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  type ConsumerStats,
  createGrpcClient,
  createLogger,
  createUserTokenVerifier,
  DependencyPolicy,
  type FaultHooks,
  GrpcServer,
  type Logger,
  type RelayStats,
  register,
  remoteUserKeys,
  ServiceEvents,
  ServiceTokens,
  type UserTokenVerifier,
} from "@taskmesh/platform";
import type { NotificationsConfig } from "./config.js";
import { dueEventHandler } from "./due-events.js";
import { EmailSender } from "./email-sender.js";
import { consumers, PUBLISHES } from "./events.js";
import { LiveFeed } from "./live-feed.js";
import { notificationInternalService, notificationService } from "./notification-service.js";
import { NotificationsStore } from "./notifications-store.js";
import { PreferencesSource, type PreferencesStats } from "./preferences.js";
import { PushSender } from "./push-sender.js";
import { pushMethods } from "./push-service.js";
import { loadVapidKeys } from "./vapid-keys.js";
import { WebhookSender } from "./webhook-sender.js";

export type { NotificationsConfig } from "./config.js";
export { loadNotificationsConfig } from "./config.js";
export { emailMessageId } from "./email-sender.js";
export { FALLBACK_ROUTING } from "./preferences.js";
export { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, webhookSignature } from "./webhook-sender.js";

export interface NotificationsDeps {
  /** Fault injection for the relay, the consumers (and the saga): the drills main.ts arms from TASKMESH_FAULT, or a test's hooks. Default: none. */
  faults?: FaultHooks;
  /** Default: a JSON logger named "notifications" at config.logLevel. */
  logger?: Logger;
  /** Clock in ms: quiet hours are judged at this time, and notifications stamped with it. Default Date.now. */
  clock?: () => number;
  /** Verifies user tokens. Default: against the users JWKS at config.jwksUrl. */
  userTokens?: UserTokenVerifier;
  /** Redelivery delay of a transient failure. Default { initialMs: 1000, maxMs: 60000 }. */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** Ack wait and deliveries before dead-lettering, for tests. Defaults: the platform's (30 s, 5). */
  consumer?: { ackWaitMs?: number; maxDeliver?: number };
  /** Backoff between attempts of one email/webhook delivery. Default { initialMs: 500, maxMs: 8000 }. */
  deliveryBackoff?: { initialMs: number; maxMs: number };
}

export interface NotificationsStats {
  /** Preference lookups: found, fallbacks (users unavailable or breaker open), gone; the breaker's state. */
  preferences: PreferencesStats;
  consumers: { reminderDue: ConsumerStats; taskDue: ConsumerStats; userDeleted: ConsumerStats };
  /** Open WatchNotifications streams. */
  watchers: number;
  relay: RelayStats;
}

export interface NotificationsApp {
  /** Starts the outbox relay and the consumers (NATS connects in the background), then binds gRPC. */
  listen(): Promise<{ grpcPort: number }>;
  /**
   * Stops consuming (a delivery waiting to retry gives up; its event is redelivered later), stops
   * serving (open watch streams end), stops the relay, closes NATS, users' channel, then the DB.
   * Safe to call twice.
   */
  shutdown(): Promise<void>;
  stats(): NotificationsStats;
}

/**
 * The notifications service, wired but not listening: consumes reminder.due / task.due (deliver
 * on the user's channels) and user.deleted (purge); serves the caller's inbox (list, mark read,
 * a live watch stream) and the internal PurgeUser; publishes notification.sent through its outbox.
 */
export function build(config: NotificationsConfig, deps: NotificationsDeps = {}): NotificationsApp {
  const logger = deps.logger ?? createLogger("notifications", { level: config.logLevel });
  const clock = deps.clock ?? Date.now;
  const store = NotificationsStore.open(config.dbPath);
  const serviceTokens = new ServiceTokens(config.serviceSecret, "notifications");
  const users = createGrpcClient(UserInternalService, {
    address: config.usersAddr,
    defaultTimeoutMs: config.usersTimeoutMs,
    // GetUserPreferences is NO_SIDE_EFFECTS, so grpc-js retries UNAVAILABLE; in the mesh Envoy does.
    retries: config.mesh !== "istio",
    metadata: async () => ({ authorization: `Bearer ${await serviceTokens.token()}` }),
    // grpc-js backs off reconnecting up to 120 s by default; users is a neighbour whose restart
    // should be noticed within seconds (the breaker's half-open trial needs a connection by then).
    channelOptions: { "grpc.initial_reconnect_backoff_ms": 250, "grpc.max_reconnect_backoff_ms": 2000 },
  });
  const preferences = new PreferencesSource({
    client: users,
    policy: new DependencyPolicy("users", {
      logger,
      breakerFailures: config.breakerFailures,
      halfOpenAfterMs: config.breakerHalfOpenMs,
    }),
    logger,
    timeoutMs: config.usersTimeoutMs,
  });
  const deliveryBackoff = deps.deliveryBackoff ?? { initialMs: 500, maxMs: 8000 };
  const sending = { attempts: config.deliveryAttempts, timeoutMs: config.deliveryTimeoutMs, backoff: deliveryBackoff };
  const email = config.smtpUrl
    ? new EmailSender({ smtpUrl: config.smtpUrl, from: config.smtpFrom, ...sending })
    : undefined;
  if (!email) logger.warn("SMTP_URL is not set: email notifications are disabled");
  const webhook = config.webhookSecret
    ? new WebhookSender({
        secret: config.webhookSecret,
        ...sending,
        ...(config.webhookPolicy ? { policy: config.webhookPolicy } : {}),
      })
    : undefined;
  if (!webhook) logger.warn("WEBHOOK_SECRET is not set: webhook notifications are disabled");
  const vapid = loadVapidKeys({
    publicKey: config.vapidPublicKey,
    privateKey: config.vapidPrivateKey,
    subject: config.vapidSubject,
    dataDir: dirname(config.dbPath),
  });
  if (vapid.source === "generated")
    logger.info({ dir: dirname(config.dbPath) }, "generated a VAPID key pair for Web Push");
  const push = new PushSender({
    vapid,
    ...sending,
    ...(config.pushPolicy ? { policy: config.pushPolicy } : {}),
  });
  const feed = new LiveFeed();
  const stopping = new AbortController();

  const grpc = new GrpcServer({
    name: "notifications",
    logger,
    services: [
      register(
        NotificationService,
        {
          ...notificationService({ store, feed, clock, logger }),
          ...pushMethods({ store, vapidPublicKey: vapid.publicKey, policy: config.pushPolicy, clock }),
        },
        { kind: "user" },
      ),
      register(NotificationInternalService, notificationInternalService({ store, logger }), { kind: "internal" }),
    ],
    userTokens: deps.userTokens ?? createUserTokenVerifier(remoteUserKeys(config.jwksUrl)),
    serviceTokens,
    // The database only: the inbox can be read and marked while NATS is away (due events then wait
    // in JetStream, notification.sent in the outbox). NATS has its own health entry, "nats".
    readiness: () => store.ping(),
  });

  const events = new ServiceEvents({
    name: "notifications",
    servers: config.natsServers,
    db: store.db,
    logger,
    health: grpc.health,
    publishes: PUBLISHES,
    consumers: consumers({
      due: dueEventHandler({
        store,
        preferences,
        email,
        webhook,
        push,
        feed,
        clock,
        logger,
        stopping: stopping.signal,
      }),
      purgeUser: (userId) => store.purgeUser(userId),
      logger,
    }),
    ...(deps.consumer ? { consumerOverrides: deps.consumer } : {}),
    ...(deps.retryBackoff ? { retryBackoff: deps.retryBackoff } : {}),
    ...(deps.faults ? { faults: deps.faults } : {}),
    reconcile: { intervalMs: config.reconcileIntervalMs },
    retention: { horizonMs: config.inboxRetentionMs },
  });
  let stopped: Promise<void> | undefined;
  return {
    async listen() {
      if (!stopped) events.start();
      const grpcPort = await grpc.listen(config.grpcPort, config.host);
      return { grpcPort };
    },
    stats: () => ({
      preferences: preferences.stats,
      consumers: {
        reminderDue: events.consumerStats("reminderDue"),
        taskDue: events.consumerStats("taskDue"),
        userDeleted: events.consumerStats("userDeleted"),
      },
      watchers: feed.watchers,
      relay: events.relayStats,
    }),
    shutdown() {
      stopped ??= (async () => {
        stopping.abort();
        await events.stopConsumers();
        await grpc.shutdown();
        await events.stop();
        users.close();
        email?.close();
        store.close();
      })();
      return stopped;
    },
  };
}
