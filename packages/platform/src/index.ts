export { bearerToken, type Principal, principalKey, requireService, requireUser } from "./auth/identity.js";
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
export { type Db, type Migration, migrate, openDatabase, pingDatabase } from "./db/database.js";
export { addHealth, type EdgeHealthOptions } from "./edge/edge-health.js";
export { addReflection } from "./edge/edge-reflection.js";
export { EdgeServer, type EdgeServerOptions, type EdgeService, peerAddressKey } from "./edge/edge-server.js";
export { type ForwardOptions, forwardService, REQUEST_ID_HEADER } from "./edge/forward-service.js";
export { OnePortServer, type OnePortServerOptions } from "./edge/one-port-server.js";
export { telemetryInterceptor } from "./edge/telemetry-interceptor.js";
export {
  type ConsumerStats,
  DEADLETTER_HEADERS,
  EventConsumer,
  type EventConsumerOptions,
  type EventContext,
  type EventHandler,
  TransientError,
} from "./events/consumer.js";
export { FAULT_ENV, type FaultDrill, parseFaultDrills, sagaFaultDrill } from "./events/fault-drill.js";
export { DEFAULT_INBOX_RETENTION_MS, InboxPruner, type InboxRetention, inboxMigration } from "./events/inbox.js";
export { NatsLink, type NatsLinkOptions, natsReady } from "./events/nats-link.js";
export {
  type AppendOptions,
  appendEvent,
  eventSubject,
  eventType,
  type NewEvent,
  newEvent,
  outboxMigration,
} from "./events/outbox.js";
export { OutboxRelay, type OutboxRelayOptions, type OutboxRow, type RelayStats } from "./events/relay.js";
export {
  DEFAULT_NATS_URL,
  NATS_HEALTH_SERVICE,
  natsServers,
  natsUrlField,
  type WatchOutboxOptions,
  watchOutbox,
} from "./events/service-kit.js";
export {
  type ConsumerSpec,
  DEADLETTER_SUBJECT_PREFIX,
  ensureConsumer,
  ensureStreams,
  STREAMS,
  type StreamSpec,
  streamReplicas,
} from "./events/streams.js";
export { deletedUserId } from "./events/user-deleted.js";
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
export {
  type BreakerState,
  type DependencyCallOptions,
  DependencyPolicy,
  type DependencyPolicyOptions,
  type StreamLease,
} from "./resilience/dependency-policy.js";
export { codeName, toRpcError } from "./rpc/errors.js";
export {
  type CallOptions,
  createGrpcClient,
  fromGrpcError,
  type GrpcClient,
  type GrpcClientOptions,
  serviceConfig,
} from "./rpc/grpc-client.js";
export {
  type Access,
  GrpcServer,
  type GrpcServerOptions,
  LIVENESS_SERVICE,
  reflectionFiles,
  reflectionPackage,
  register,
  type ServiceRegistration,
} from "./rpc/grpc-server.js";
export { type OutlierDetectionOptions, REPLICA_FAILURE_CODES } from "./rpc/outlier-detection.js";
export { validateRequest } from "./rpc/validation.js";
export { type Running, runMain } from "./service/run-main.js";
export { grpcJsInstrumented, instrumentGrpcJs } from "./telemetry/grpc-patch.js";
export { meter, type PlatformInstruments, platformInstruments, recordRpc } from "./telemetry/metrics.js";
export {
  activeTelemetry,
  InMemorySpanExporter,
  samplerFromEnv,
  shutdownTelemetry,
  startTelemetry,
  type Telemetry,
  type TelemetryOptions,
} from "./telemetry/telemetry.js";
export {
  activeSpanContext,
  activeTraceparent,
  contextFromTraceparent,
  TRACE_ID_HEADER,
  traceLogFields,
} from "./telemetry/trace-context.js";
export { JWKS_PATH, type ServiceName, type ServiceTopology, TOPOLOGY } from "./topology.js";
