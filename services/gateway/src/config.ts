import { env, JWKS_PATH, loadConfig, TOPOLOGY } from "@taskmesh/platform";

const spec = {
  /** The one public port: gRPC (h2c), Connect (HTTP/1.1 and h2c) and gRPC-Web. Default 8080. */
  GRPC_PORT: env.port(TOPOLOGY.gateway.grpcPort),
  /** Default 127.0.0.1. */
  HOST: env.string("127.0.0.1"),
  /** UserService backend, host:port. Default 127.0.0.1:50051. */
  USERS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.users.grpcPort}`),
  /** TaskService backend, host:port. Default 127.0.0.1:50052. */
  TASKS_ADDR: env.address(`127.0.0.1:${TOPOLOGY.tasks.grpcPort}`),
  /** The users service's JWKS, to verify user tokens at the edge. Default: users on localhost. */
  JWKS_URL: env.url(`http://127.0.0.1:${TOPOLOGY.users.httpPort}${JWKS_PATH}`),
  /** Longest deadline given to a forwarded call (a caller's shorter deadline wins), 100..60000 ms. Default 10000. */
  BACKEND_TIMEOUT_MS: env.int({ fallback: 10_000, min: 100, max: 60_000 }),
  /** How long shutdown lets in-flight calls finish, 0..60000 ms. Default 10000. */
  SHUTDOWN_GRACE_MS: env.int({ fallback: 10_000, min: 0, max: 60_000 }),
  /** `istio`: leave retries to Envoy so attempts do not multiply. Default none. */
  TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
  LOG_LEVEL: env.oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const, "info"),
};

export interface GatewayConfig {
  port: number;
  host: string;
  usersAddr: string;
  tasksAddr: string;
  jwksUrl: string;
  backendTimeoutMs: number;
  shutdownGraceMs: number;
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the gateway's environment; a ConfigError names every bad variable. */
export function loadGatewayConfig(source: Record<string, string | undefined> = process.env): GatewayConfig {
  const c = loadConfig(spec, source);
  return {
    port: c.GRPC_PORT,
    host: c.HOST,
    usersAddr: c.USERS_ADDR,
    tasksAddr: c.TASKS_ADDR,
    jwksUrl: c.JWKS_URL,
    backendTimeoutMs: c.BACKEND_TIMEOUT_MS,
    shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}
