import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { DashboardService } from "@taskmesh/gen/taskmesh/gateway/v1/dashboard_pb";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { isNetworkFailure } from "./errors";

export interface ApiHooks {
  /** The bearer token to send, if signed in. */
  token(): string | undefined;
  /** A call was refused as UNAUTHENTICATED while a token was sent: the access token is no longer accepted. */
  onUnauthenticated(): void;
  /** Whether the gateway answered (true) or could not be reached (false), after every call. */
  onReachable(reachable: boolean): void;
}

/**
 * The Connect transport (JSON over fetch, same origin as the page; VITE_GATEWAY_URL for a
 * client hosted elsewhere, which the gateway must allow with CORS_ALLOWED_ORIGINS).
 */
export function createTransport(hooks: ApiHooks): Transport {
  const auth: Interceptor = (next) => async (req) => {
    // RefreshSession takes the refresh token alone (and its refusal is handled by its caller).
    const token = req.method.name === "RefreshSession" ? undefined : hooks.token();
    if (token) req.header.set("authorization", `Bearer ${token}`);
    try {
      const res = await next(req);
      hooks.onReachable(true);
      return res;
    } catch (err) {
      const e = ConnectError.from(err);
      hooks.onReachable(!isNetworkFailure(e));
      if (e.code === Code.Unauthenticated && token) hooks.onUnauthenticated();
      throw err;
    }
  };
  return createConnectTransport({
    baseUrl: import.meta.env.VITE_GATEWAY_URL ?? window.location.origin,
    interceptors: [auth],
    // Unary NO_SIDE_EFFECTS calls as GET (cacheable, no preflight); others POST.
    useHttpGet: true,
  });
}

export function clients(transport: Transport) {
  return {
    users: createClient(UserService, transport),
    tasks: createClient(TaskService, transport),
    notifications: createClient(NotificationService, transport),
    analytics: createClient(AnalyticsService, transport),
    dashboard: createClient(DashboardService, transport),
  };
}
export type Clients = ReturnType<typeof clients>;
