/**
 * The one declaration of taskmesh's services: their ports and who calls whom. The local runner
 * (`npm start`) and the mesh manifests are derived from it (and tests check the manifests
 * against it), so a new caller is added here first.
 */
export interface ServiceTopology {
  /** gRPC port (the gateway's public port for the edge). */
  grpcPort: number;
  /** Extra HTTP port (users' JWKS), if any. */
  httpPort?: number;
  /**
   * Prometheus scrape endpoint (`GET /metrics`, METRICS_PORT of packages/platform/src/telemetry):
   * 9461 and up, one per service, so `npm start` prints the same URLs every run. The runner gives
   * replicas 2..n and test systems free ports instead; in the mesh Istio's metrics merging scrapes
   * it through the sidecar's :15020 (prometheus.io/* annotations on the pod).
   */
  metricsPort: number;
  /** Services this one calls over gRPC (and users' JWKS over HTTP where `jwks` is true). */
  calls: readonly string[];
  /** Fetches the users JWKS to verify tokens itself. */
  jwks: boolean;
  /** Built and started by `npm start` (services of later issues are declared but not yet built). */
  built: boolean;
  /**
   * The gRPC services this one serves, by fully-qualified Protobuf name (health and reflection
   * aside). The mesh routes and authorizes by their method paths, read from the descriptors.
   */
  serves?: readonly string[];
  /**
   * Per callee (every entry of `calls`), what this service calls on it: a Protobuf service name
   * (`taskmesh.tasks.v1.TaskService`, all its methods) or one method (`taskmesh.tasks.v1.TaskService/GetTask`).
   * The callee's AuthorizationPolicy allows exactly these paths from this service's identity.
   */
  uses?: Readonly<Record<string, readonly string[]>>;
  /** Connects to NATS JetStream (publishes or consumes events); only these may reach NATS in the mesh. */
  nats?: boolean;
  /** Keeps a SQLite database: in the mesh, one writer on a persistent volume. */
  sqlite?: boolean;
  /** Reached from outside through the ingress gateway (the edge). */
  edge?: boolean;
}

export const TOPOLOGY = {
  users: {
    grpcPort: 50051,
    httpPort: 50061,
    metricsPort: 9461,
    // The account-deletion saga purges the user's data in tasks and notifications.
    calls: ["tasks", "notifications"],
    jwks: false,
    built: true,
    serves: ["taskmesh.users.v1.UserService", "taskmesh.users.v1.UserInternalService"],
    uses: {
      tasks: ["taskmesh.tasks.v1.TaskInternalService/PurgeUser"],
      notifications: ["taskmesh.notifications.v1.NotificationInternalService/PurgeUser"],
    },
    nats: true,
    sqlite: true,
  },
  tasks: {
    grpcPort: 50052,
    metricsPort: 9462,
    calls: [],
    jwks: true,
    built: true,
    serves: [
      "taskmesh.tasks.v1.TaskService",
      "taskmesh.tasks.v1.TaskInternalService",
      "taskmesh.tasks.v1.CalendarFeedInternalService",
    ],
    uses: {},
    nats: true,
    sqlite: true,
  },
  gateway: {
    grpcPort: 8080,
    metricsPort: 9463,
    calls: ["users", "tasks", "notifications", "analytics"],
    jwks: true,
    built: true,
    // The edge serves the public APIs (forwarded to their owners with the caller's JWT) and its BFF.
    serves: [
      "taskmesh.users.v1.UserService",
      "taskmesh.tasks.v1.TaskService",
      "taskmesh.notifications.v1.NotificationService",
      "taskmesh.analytics.v1.AnalyticsService",
      "taskmesh.gateway.v1.DashboardService",
    ],
    // Besides the public API, its readiness asks each backend's grpc.health.v1 Check (backendReady),
    // and GET /calendar/<secret>.ics asks tasks to render the feed.
    uses: {
      users: ["taskmesh.users.v1.UserService", "grpc.health.v1.Health/Check"],
      tasks: [
        "taskmesh.tasks.v1.TaskService",
        "grpc.health.v1.Health/Check",
        "taskmesh.tasks.v1.CalendarFeedInternalService/RenderCalendarFeed",
      ],
      notifications: ["taskmesh.notifications.v1.NotificationService", "grpc.health.v1.Health/Check"],
      analytics: ["taskmesh.analytics.v1.AnalyticsService", "grpc.health.v1.Health/Check"],
    },
    nats: false,
    sqlite: false,
    edge: true,
  },
  recurrence: {
    grpcPort: 50056,
    metricsPort: 9464,
    calls: ["tasks"],
    jwks: false,
    built: true,
    // Health and reflection only: its work arrives as task.completed events.
    serves: [],
    uses: { tasks: ["taskmesh.tasks.v1.TaskInternalService/CreateOccurrence"] },
    nats: true,
    sqlite: true,
  },
  reminders: {
    grpcPort: 50055,
    metricsPort: 9465,
    calls: [],
    jwks: false,
    built: true,
    // Durable timers fed by task events; the internal query lists a user's schedule.
    serves: ["taskmesh.reminders.v1.ReminderInternalService"],
    uses: {},
    nats: true,
    sqlite: true,
  },
  notifications: {
    grpcPort: 50053,
    metricsPort: 9466,
    calls: ["users"],
    jwks: true,
    built: true,
    serves: ["taskmesh.notifications.v1.NotificationService", "taskmesh.notifications.v1.NotificationInternalService"],
    uses: { users: ["taskmesh.users.v1.UserInternalService/GetUserPreferences"] },
    nats: true,
    sqlite: true,
  },
  analytics: {
    grpcPort: 50054,
    metricsPort: 9467,
    calls: [],
    jwks: true,
    built: true,
    // Read models (CQRS) fed only by events.
    serves: ["taskmesh.analytics.v1.AnalyticsService"],
    uses: {},
    nats: true,
    sqlite: true,
  },
} as const satisfies Record<string, ServiceTopology>;

export type ServiceName = keyof typeof TOPOLOGY;

/** Path of the users JWKS document (served over HTTP by users; Istio's RequestAuthentication reads it too). */
export const JWKS_PATH = "/.well-known/jwks.json";
