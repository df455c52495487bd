/**
 * The mesh's choices that are not topology: names, timeouts, retry budgets, sizes. One place, each
 * with its reason; the generator applies them to every service in TOPOLOGY alike.
 */
import { JWKS_PATH, type ServiceTopology, TOPOLOGY } from "@taskmesh/platform";

export const NAMESPACE = "taskmesh";
/** Every built service; the mesh has a Deployment, Service, ServiceAccount, DestinationRule, VirtualService and AuthorizationPolicy for each. */
export const SERVICES = (Object.entries(TOPOLOGY) as [string, ServiceTopology][])
  .filter(([, t]) => t.built)
  .map(([name, t]) => ({ name, ...t }))
  .sort((a, b) => a.name.localeCompare(b.name));
export type MeshService = (typeof SERVICES)[number];

export const fqdn = (name: string) => `${name}.${NAMESPACE}.svc.cluster.local`;
/** The SPIFFE identity Istio gives a pod running as ServiceAccount `sa` (trust domain cluster.local). */
export const principal = (sa: string, ns = NAMESPACE) => `cluster.local/ns/${ns}/sa/${sa}`;
/** Istio's default ingress gateway (istioctl's `default` and `demo` profiles). */
export const INGRESS = {
  selector: { istio: "ingressgateway" },
  principal: principal("istio-ingressgateway-service-account", "istio-system"),
  namespace: "istio-system",
  port: 80,
};

/** Image names; Tilt's docker_build replaces them in dev, the prod overlay's `images:` points them at a registry. */
export const image = (name: string) => `taskmesh/${name}`;
export const PROD_REGISTRY = "registry.example.com/taskmesh";
export const PROD_TAG = "0.1.0";

/** Runs as the `node` user of the official Node image (uid/gid 1000), numeric so runAsNonRoot can check it. */
export const APP_UID = 1000;
/** SQLite lives here (TASKMESH_DATA_DIR); users also keeps its signing keys beside the database. */
export const DATA_DIR = "/data";
export const SERVICE_SECRET = { name: "taskmesh-service-secret", key: "TASKMESH_SERVICE_SECRET" };

/**
 * GrpcServer.shutdown() drains for up to 10 s; NATS and SQLite close after that. 30 s leaves the
 * app its drain plus the sidecar's (terminationDrainDuration below) before SIGKILL.
 */
export const TERMINATION_GRACE_SECONDS = 30;
export const SIDECAR_DRAIN = "20s";

/**
 * Route budgets. Istio's `attempts` counts retries, so a request makes attempts + 1 tries.
 *
 * One layer retries: the caller's sidecar, on the route to the service it calls (`internal`). It is
 * the hop that failed, it knows the callee's endpoints and their ejections, and a retry there
 * repeats one backend call. The edge does not retry: a retry at the ingress would re-run the
 * gateway's whole handler (the dashboard fans out to four backends), each of whose calls the
 * gateway's sidecar retries again; and the apps' own grpc-js retries are off in the mesh
 * (TASKMESH_MESH=istio). So a call makes at most internal.attempts + 1 = 3 tries end to end.
 */
export const ROUTES = {
  /**
   * Between services. The gateway gives a forwarded call at most BACKEND_TIMEOUT_MS (10 s by
   * default) and sends it as grpc-timeout; the route allows as much, and the shorter one wins.
   */
  internal: { timeout: "10s", attempts: 2, perTryTimeout: "3s" },
  /** At the edge: the gateway fans out (dashboard) with its own deadlines inside this; no retries (above). */
  edge: { timeout: "15s", attempts: 0, perTryTimeout: "5s" },
};
/** Tries a call may make end to end in the mesh, every layer multiplied (the test checks the rendered routes). */
export const MAX_TRIES_END_TO_END = 3;
/**
 * gRPC codes Envoy may retry an idempotent call on (from the response's grpc-status), plus
 * transport failures where the request never reached the app. Not `deadline-exceeded` (the
 * caller's budget is spent), not `internal` (a bug does not heal on retry) and not
 * `resource-exhausted`: that is the gateway's rate limit or a server shedding load, and a retry
 * is exactly the extra load shedding refuses.
 */
export const RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled";

/**
 * The header the ingress sets from the verified token's `sub` (RequestAuthentication
 * outputClaimToHeaders) and hashes on to pick a gateway replica (DestinationRule consistentHash),
 * so one user's calls meet one replica's token bucket and the per-user rate holds with n replicas.
 */
export const USER_HASH_HEADER = "x-taskmesh-user";

/** Bulkhead and ejection per destination (DestinationRule). */
export const CONNECTION_POOL = {
  tcp: { maxConnections: 100, connectTimeout: "2s" },
  http: { http2MaxRequests: 256, http1MaxPendingRequests: 64, idleTimeout: "300s" },
};
export const OUTLIER_DETECTION = {
  consecutiveGatewayErrors: 5,
  consecutive5xxErrors: 10,
  interval: "10s",
  baseEjectionTime: "30s",
  maxEjectionPercent: 50,
};

/** Requests and limits (no CPU limit: throttling a Node event loop hurts latency more than sharing a core). */
export const RESOURCES = {
  dev: { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "256Mi" } },
  prod: { requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "512Mi" } },
};
export const STORAGE = { dev: "1Gi", prod: "10Gi" };
/** Stateless services run this many replicas in prod; SQLite owners stay single writers. */
export const PROD_REPLICAS = 3;

/** The users JWKS over HTTP, where RequestAuthentication (and the services' own verifiers) fetch it. */
export function jwksUrl(): string {
  const users = TOPOLOGY.users;
  return `http://${fqdn("users")}:${users.httpPort}${JWKS_PATH}`;
}

/**
 * Public methods a caller may use without a user token. Mirrors the users service's
 * `anonymous: ["register", "login", "refreshSession"]`; the test checks each exists in the contract.
 * RefreshSession carries a refresh token, not an access token (the one it renews may have expired).
 */
export const ANONYMOUS_METHODS = [
  "/taskmesh.users.v1.UserService/Register",
  "/taskmesh.users.v1.UserService/Login",
  "/taskmesh.users.v1.UserService/RefreshSession",
];
/** Reflection and health answer without a token at the edge, so grpcurl can list and describe the API. */
export const EDGE_OPEN_METHODS = [
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  "/grpc.health.v1.Health/Check",
];

export const NATS = {
  name: "nats",
  image: "nats:2.11-alpine",
  version: "2.11",
  clientPort: 4222,
  clusterPort: 6222,
  monitorPort: 8222,
  url: () => `nats://${fqdn("nats")}:4222`,
  prodReplicas: 3,
  /** Lame-duck mode moves clients off a stopping server before it exits. */
  lameDuck: "30s",
};

/**
 * Each service's Prometheus endpoint (METRICS_PORT = TOPOLOGY's metricsPort, packages/platform/src/telemetry).
 * The pod carries the `prometheus.io/*` annotations; Istio's metrics merging (meshConfig
 * enablePrometheusMerge, on by default) rewrites them at injection to the sidecar agent's
 * :15020/stats/prometheus, and the agent answers a scrape with Envoy's metrics followed by the app's,
 * which it fetches from `http://localhost:<port>/metrics` inside the pod (pilot-agent's status
 * server). So Prometheus never connects to the metrics port itself, and :15020 is not intercepted
 * by the sidecar: no AuthorizationPolicy needs to allow the metrics port, and deny-all keeps it
 * closed to every other workload. (Were merging turned off, Prometheus would need its own sidecar
 * identity and a rule allowing it this port.)
 */
export const METRICS = { path: "/metrics", containerPortName: "metrics", sidecarAgentPort: 15020 };

/**
 * Where the services export their own spans: OTLP/HTTP to the collector of Istio's Jaeger addon
 * (samples/addons/jaeger.yaml: Service jaeger-collector in istio-system, port 4318 `http-otel`), the
 * same Jaeger the sidecars' spans reach through the Telemetry resource. The services follow the
 * sidecar's sampling decision (parentbased), so Envoy's spans and theirs make one trace.
 */
export const OTLP_ENDPOINT = "http://jaeger-collector.istio-system.svc.cluster.local:4318";

/** The name of the tracing extensionProvider declared in meshConfig (mesh/istio/install.yaml). */
export const TRACING_PROVIDER = "jaeger";

/** The dependency the fault-injection drill slows and breaks, and how. */
export const FAULT = {
  target: "tasks",
  delay: { percent: 20, fixedDelay: "3s" },
  abort: { percent: 10, grpcStatus: "UNAVAILABLE" },
};
/** The canary: this much of tasks' traffic goes to subset v2. */
export const CANARY = { target: "tasks", v2Weight: 10 };

export const GENERATED_HEADER =
  "Generated by tests/mesh/gen from TOPOLOGY and the contracts: `npm run mesh:gen`. Do not edit.";
