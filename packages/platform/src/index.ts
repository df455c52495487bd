export { bearerToken, type Principal, requireService, requireUser, userEmail } from "./auth/identity.js";
export {
  createUserTokenVerifier,
  remoteUserKeys,
  ServiceTokens,
  USER_TOKEN_ALG,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
  type UserTokenVerifier,
} from "./auth/tokens.js";
export { verifyInCall } from "./auth/verified-in-call.js";
export { ConfigError, type ConfigOf, env, loadConfig } from "./config/config.js";
export {
  jwksUrlField,
  type ServiceBaseConfig,
  serverConfigSpec,
  serviceBaseConfig,
  serviceConfigSpec,
} from "./config/service-config.js";
export { type Db, type Migration, openDatabase, pingDatabase } from "./db/database.js";
export { WalSync, type WalSyncOptions } from "./db/wal-sync.js";
export {
  type ConsumerStats,
  DEADLETTER_HEADERS,
  EventConsumer,
  type EventConsumerOptions,
  type EventContext,
  type EventHandler,
  TransientError,
} from "./events/consumer.js";
export { FAULT_ENV, type FaultHooks, faultDrillHooks } from "./events/fault-drill.js";
export { DEFAULT_INBOX_RETENTION_MS, InboxPruner, type InboxRetention, inboxMigration } from "./events/inbox.js";
export { NatsLink, type NatsLinkOptions, natsReady } from "./events/nats-link.js";
export { type AppendOptions, appendEvent, type NewEvent, newEvent, outboxMigration } from "./events/outbox.js";
export {
  OUTBOX_RECONCILER_DEFAULTS,
  OutboxReconciler,
  type OutboxReconcilerOptions,
  outboxStreamSeqMigration,
} from "./events/reconciler.js";
export { OutboxRelay, type OutboxRelayOptions, type OutboxRow, type RelayStats } from "./events/relay.js";
export {
  type ConsumerDeclaration,
  type ConsumerDeclarations,
  ServiceEvents,
  type ServiceEventsOptions,
} from "./events/service-events.js";
export { NATS_HEALTH_SERVICE, natsServers, natsUrlField } from "./events/service-kit.js";
export { type ConsumerSpec, ensureStreams, STREAMS, type StreamSpec } from "./events/streams.js";
export { deletedUserId, userDeletedConsumer } from "./events/user-deleted.js";
export { createLogger, type Logger } from "./log/logger.js";
export {
  checkOutboundUrl,
  guardedLookup,
  OutboundAddressError,
  type OutboundPolicy,
  outboundAllowField,
  outboundPolicy,
  refusedRange,
} from "./net/outbound-address.js";
export { RuleBudgetExceeded, withBudget } from "./recurrence/rule-budget.js";
export {
  type BreakerState,
  type DependencyCallOptions,
  DependencyPolicy,
  type DependencyPolicyOptions,
  type StreamLease,
} from "./resilience/dependency-policy.js";
export { type CallerClient, CLIENT_AGENT_HEADER, CLIENT_IP_HEADER, callerClient } from "./rpc/client-info.js";
export { codeName, toRpcError } from "./rpc/errors.js";
export {
  type CallOptions,
  createGrpcClient,
  type GrpcClient,
  type GrpcClientOptions,
  serviceConfig,
} from "./rpc/grpc-client.js";
export {
  type Access,
  GrpcServer,
  type GrpcServerOptions,
  register,
  type ServiceRegistration,
} from "./rpc/grpc-server.js";
export { type OutlierDetectionOptions, REPLICA_FAILURE_CODES } from "./rpc/outlier-detection.js";
export { type Running, runMain } from "./service/run-main.js";
export { grpcJsInstrumented } from "./telemetry/grpc-patch.js";
export { meter, platformInstruments } from "./telemetry/metrics.js";
export { shutdownTelemetry, startTelemetry, type Telemetry, type TelemetryOptions } from "./telemetry/telemetry.js";
export { activeTraceparent, TRACE_ID_HEADER } from "./telemetry/trace-context.js";
export { JWKS_PATH, type ServiceName, type ServiceTopology, TOPOLOGY } from "./topology.js";
