import { NotificationInternalService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserInternalService, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  createUserTokenVerifier,
  type FaultHooks,
  GrpcServer,
  type Logger,
  type RelayStats,
  register,
  ServiceEvents,
  ServiceTokens,
} from "@taskmesh/platform";
import { type AccountDeletionOptions, AccountDeletions } from "./account-deletion-saga.js";
import type { UsersConfig } from "./config.js";
import { DeletionSagaLog } from "./deletion-saga-log.js";
import { PUBLISHES } from "./events.js";
import { JwksServer } from "./jwks-server.js";
import { PasswordHasher, type ScryptParams } from "./password-hasher.js";
import { SessionStore } from "./session-store.js";
import { SigningKeys } from "./signing-keys.js";
import { TokenIssuer } from "./token-issuer.js";
import { userInternalService } from "./user-internal-service.js";
import { userService } from "./user-service.js";
import { UsersStore } from "./users-store.js";

export type { UsersConfig } from "./config.js";

/** SESSION_IDLE_SECONDS / SESSION_MAX_AGE_SECONDS defaults (14 and 30 days), for configs built without loadUsersConfig. */
const DEFAULT_SESSION_LIFETIMES = { idleMs: 14 * 86_400_000, maxAgeMs: 30 * 86_400_000 };

export { loadUsersConfig } from "./config.js";

export interface UsersDeps {
  /** Fault injection for the relay, the consumers (and the saga): the drills main.ts arms from TASKMESH_FAULT, or a test's hooks. Default: none. */
  faults?: FaultHooks;
  /** Default: a JSON logger named "users" at config.logLevel. */
  logger?: Logger;
  /** Clock in ms for account timestamps and token iat/exp. Default Date.now. */
  now?: () => number;
  /** scrypt cost. Default DEFAULT_SCRYPT_PARAMS. */
  scrypt?: ScryptParams;
  /** How often the outbox backlog is logged while events wait. Default 5000 ms. */
  outboxReportIntervalMs?: number;
  /**
   * Account-deletion saga tuning for tests: backoff between attempts (default 500 ms doubling to
   * 30 s), retry budget in ms (default config.deletionRetryBudgetMs) and a hook awaited after each
   * step (to stop the app between two steps).
   */
  deletion?: Pick<AccountDeletionOptions, "backoff" | "afterStep" | "retryBudgetMs">;
}

/** The state of the service's event publishing. */
export interface UsersEvents {
  /** Events committed but not yet acknowledged by JetStream. */
  backlog(): number;
  /** True while the NATS connection is up (false before listen()). */
  readonly natsConnected: boolean;
  /** Publish counters of the relay since listen(). */
  readonly relay: Readonly<RelayStats>;
}

export interface UsersApp {
  /**
   * Loads (or creates) the signing key, starts the outbox relay (NATS is connected in the
   * background: start-up never waits for it), then binds gRPC and the JWKS HTTP server.
   */
  listen(): Promise<{ grpcPort: number; httpPort: number }>;
  /**
   * Stops accepting and drains in-flight calls (gRPC and HTTP), stops the relay (it publishes what
   * it can for a few seconds; the rest waits in the outbox), closes NATS, then the database.
   */
  shutdown(): Promise<void>;
  /** Outbox backlog and NATS state. */
  readonly events: UsersEvents;
  /** The signing key set, available once listen() resolved (for rotation by an operator or a test). */
  readonly keys: SigningKeys;
  /** The account-deletion orchestrator (its sagas resume in listen()). */
  readonly deletions: AccountDeletions;
}

/**
 * The users service, wired but not listening: accounts and preferences in SQLite, scrypt
 * password hashes, EdDSA access tokens whose public keys are served as a JWKS over HTTP.
 * This server verifies user tokens against its own keys (no HTTP hop to itself).
 */
export function build(config: UsersConfig, deps: UsersDeps = {}): UsersApp {
  const logger = deps.logger ?? createLogger("users", { level: config.logLevel });
  const now = deps.now ?? Date.now;
  const store = UsersStore.open(config.dbPath);
  const hasher = new PasswordHasher(deps.scrypt);
  // The deletion saga's callees. Their channels connect lazily, on the first purge. PurgeUser is
  // IDEMPOTENT in the contracts, so the channel retries UNAVAILABLE itself (not in the mesh,
  // where Envoy does); the saga retries on top of that, with its own budget.
  const serviceTokens = new ServiceTokens(config.serviceSecret, "users");
  const clientOptions = {
    defaultTimeoutMs: config.deletionCallTimeoutMs,
    retries: config.mesh !== "istio",
    metadata: async () => ({ authorization: `Bearer ${await serviceTokens.token()}` }),
  };
  const tasks = createGrpcClient(TaskInternalService, { address: config.tasksAddr, ...clientOptions });
  const notifications = createGrpcClient(NotificationInternalService, {
    address: config.notificationsAddr,
    ...clientOptions,
  });
  const deletions = new AccountDeletions({
    log: new DeletionSagaLog(store.db),
    store,
    tasks,
    notifications,
    logger: logger.child({ component: "account-deletion" }),
    now,
    retryBudgetMs: config.deletionRetryBudgetMs,
    callTimeoutMs: config.deletionCallTimeoutMs,
    ...deps.deletion,
    ...(deps.faults?.afterSagaStep
      ? { afterStep: afterSagaStep(deps.faults.afterSagaStep, deps.deletion?.afterStep) }
      : {}),
  });
  // Loading or generating the key is async, so it happens in listen(); no handler runs before.
  let keys: SigningKeys | undefined;
  const keysOrThrow = () => {
    if (!keys) throw new Error("signing keys not loaded: call listen() first");
    return keys;
  };
  const grpc = new GrpcServer({
    name: "users",
    logger,
    services: [
      register(
        UserService,
        userService({
          store,
          hasher,
          tokens: new TokenIssuer(() => keysOrThrow().current, config.tokenTtlSeconds, now),
          sessions: new SessionStore(store.db, config.sessions ?? DEFAULT_SESSION_LIFETIMES),
          deletions,
          logger,
          now,
          ...(config.webhookPolicy ? { webhookPolicy: config.webhookPolicy } : {}),
          ...(config.passwordMinScore !== undefined ? { passwordMinScore: config.passwordMinScore } : {}),
        }),
        { kind: "user", anonymous: ["register", "login", "refreshSession"] },
      ),
      register(UserInternalService, userInternalService(store), { kind: "internal" }),
    ],
    userTokens: createUserTokenVerifier((header, token) => keysOrThrow().keyGetter(header, token)),
    serviceTokens: new ServiceTokens(config.serviceSecret, "users"),
    // The database only: with NATS away registrations still commit (their events wait in the
    // outbox), so going unready would refuse writes that can be taken. NATS has its own health
    // entry ("nats") and the backlog is logged.
    readiness: () => store.ping(),
  });
  const jwks = new JwksServer({ jwks: () => keysOrThrow().jwks, ready: () => store.ping(), logger });

  const events = new ServiceEvents({
    name: "users",
    servers: config.natsServers,
    db: store.db,
    logger,
    health: grpc.health,
    publishes: PUBLISHES,
    ...(deps.outboxReportIntervalMs ? { outboxReportIntervalMs: deps.outboxReportIntervalMs } : {}),
    ...(deps.faults ? { faults: deps.faults } : {}),
    reconcile: { intervalMs: config.reconcileIntervalMs },
    retention: { horizonMs: config.inboxRetentionMs },
  });
  let stopped: Promise<void> | undefined;
  return {
    get keys() {
      return keysOrThrow();
    },
    deletions,
    events: {
      backlog: () => store.unpublishedEvents(),
      get natsConnected() {
        return events.natsConnected;
      },
      get relay() {
        return events.relayStats;
      },
    },
    async listen() {
      keys ??= await SigningKeys.open(config.keyPath, { logger, now });
      await hasher.warmUp();
      if (!stopped) events.start();
      // Every deletion a previous process left unfinished continues (or compensates) from its log.
      const resumed = deletions.resumeAll();
      if (resumed > 0) logger.info({ resumed }, "account deletions resumed");
      const grpcPort = await grpc.listen(config.grpcPort, config.host);
      const httpPort = await jwks.listen(config.jwksPort, config.host);
      return { grpcPort, httpPort };
    },
    shutdown() {
      stopped ??= (async () => {
        // First, synchronously: no saga step starts after this point (a test stops the app from a
        // saga hook to simulate a crash between two steps). Running sagas resume at the next start.
        const sagasStopped = deletions.stop();
        await Promise.all([grpc.shutdown(), jwks.close(), sagasStopped]);
        tasks.close();
        notifications.close();
        await events.stop();
        store.close();
      })();
      return stopped;
    },
  };
}

/** The fault seam's saga hook first (it may SIGKILL: the step is already logged), then a test's own. */
function afterSagaStep(
  fault: (step: string) => void,
  then: AccountDeletionOptions["afterStep"],
): NonNullable<AccountDeletionOptions["afterStep"]> {
  return async (saga, step) => {
    fault(step);
    await then?.(saga, step);
  };
}
