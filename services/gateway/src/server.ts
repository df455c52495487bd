import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  createUserTokenVerifier,
  EdgeServer,
  type EdgeService,
  forwardService,
  type GrpcClient,
  type Logger,
  type UserTokenVerifier,
} from "@taskmesh/platform";
import { createRemoteJWKSet, errors, type JWTVerifyGetKey } from "jose";
import type { GatewayConfig } from "./config.js";

export type { GatewayConfig } from "./config.js";
export { loadGatewayConfig } from "./config.js";

export interface GatewayDeps {
  /** Default: a JSON logger named "gateway" at config.logLevel. */
  logger?: Logger;
  /**
   * Verifies user tokens at the edge. Default: against the users JWKS at config.jwksUrl (jose's
   * remote key set caches the keys and re-fetches on an unknown kid, so rotation needs no restart).
   */
  userTokens?: UserTokenVerifier;
}

export interface GatewayApp {
  /** Binds the public port (config.port; 0 picks a free one). */
  listen(): Promise<{ grpcPort: number }>;
  /** Stops accepting, lets in-flight calls finish, then closes the backend channels. Safe to call twice. */
  shutdown(): Promise<void>;
}

/**
 * The edge, wired but not listening: the public services (UserService, TaskService) on one port
 * for gRPC, Connect and gRPC-Web, each call's user JWT verified here and then forwarded with that
 * token to the owning backend over one long-lived grpc-js channel per backend. Internal services
 * are not mounted, so their paths are 404 / UNIMPLEMENTED here.
 */
export function build(config: GatewayConfig, deps: GatewayDeps = {}): GatewayApp {
  const logger = deps.logger ?? createLogger("gateway", { level: config.logLevel });
  // Everything below is created once; a request allocates only its own headers and messages.
  const userTokens = deps.userTokens ?? createUserTokenVerifier(jwksKeys(new URL(config.jwksUrl)));
  const clientOptions = {
    defaultTimeoutMs: config.backendTimeoutMs,
    // In the mesh, Envoy retries; two layers of retries would multiply attempts.
    retries: config.mesh !== "istio",
  };
  const users = createGrpcClient(UserService, { address: config.usersAddr, ...clientOptions });
  const tasks = createGrpcClient(TaskService, { address: config.tasksAddr, ...clientOptions });
  const forward = { userTokens, maxTimeoutMs: config.backendTimeoutMs };

  const edge = new EdgeServer({
    logger,
    services: (drainSignal): EdgeService[] => [
      {
        service: UserService,
        // Register and Login are how a caller gets a token; users' own server agrees.
        impl: forwardService(UserService, users, { ...forward, drainSignal, anonymous: ["register", "login"] }),
        ready: backendReady(users, UserService),
      },
      {
        service: TaskService,
        impl: forwardService(TaskService, tasks, { ...forward, drainSignal }),
        ready: backendReady(tasks, TaskService),
      },
    ],
  });

  let stopped: Promise<void> | undefined;
  return {
    async listen() {
      return { grpcPort: await edge.listen(config.port, config.host) };
    },
    shutdown() {
      stopped ??= (async () => {
        await edge.shutdown(config.shutdownGraceMs);
        users.close();
        tasks.close();
      })();
      return stopped;
    },
  };
}

/**
 * The users JWKS, cached by jose (re-fetched at most every 10 minutes, or on an unknown `kid`
 * after a 30 s cool-down). When the key set cannot be fetched at all, the caller gets
 * UNAVAILABLE (retry later), not UNAUTHENTICATED (which would tell a client to drop its token).
 */
function jwksKeys(url: URL): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(url);
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (e) {
      if (
        e instanceof errors.JWKSNoMatchingKey ||
        e instanceof errors.JWKSMultipleMatchingKeys ||
        e instanceof errors.JOSENotSupported ||
        e instanceof errors.JOSEAlgNotAllowed
      )
        throw e;
      throw new ConnectError("token keys unavailable, retry later", Code.Unavailable);
    }
  };
}

/** Readiness of a public service = its backend's own grpc.health.v1 answer, over the same channel. */
function backendReady(client: { readonly channel: GrpcClient<DescService>["channel"] }, service: DescService) {
  const health = createGrpcClient(Health, {
    address: "unused",
    channelOptions: { channelOverride: client.channel.getChannel() },
  });
  return async (signal: AbortSignal) => {
    const res = await health.check({ service: service.typeName }, { timeoutMs: 2000, signal });
    return res.status === HealthCheckResponse_ServingStatus.SERVING;
  };
}
