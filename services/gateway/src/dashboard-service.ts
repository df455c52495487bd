import { randomUUID } from "node:crypto";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { type DashboardService, type MissingPart, Part } from "@taskmesh/gen/taskmesh/gateway/v1/dashboard_pb";
import type { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import type { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  bearerToken,
  codeName,
  type GrpcClient,
  type Logger,
  type UserTokenVerifier,
  verifyInCall,
} from "@taskmesh/platform";
import { REQUEST_ID_HEADER } from "@taskmesh/platform/edge";

export interface DashboardDeps {
  /** Each client is guarded by its dependency's policy (timeout, breaker, bulkhead). */
  users: GrpcClient<typeof UserService>;
  tasks: GrpcClient<typeof TaskService>;
  notifications: GrpcClient<typeof NotificationService>;
  analytics: GrpcClient<typeof AnalyticsService>;
  userTokens: UserTokenVerifier;
  /** Each part's own deadline (capped by the caller's remaining deadline). */
  partTimeoutMs: number;
  logger: Logger;
}

/** How many upcoming tasks and unread notifications the dashboard shows. */
const PAGE = 5;
/** A client-supplied request id is kept only if it looks like one (as the forwarding routes do). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

type Settled<T> = { ok: true; value: T } | { ok: false; error: ConnectError };

/**
 * The BFF: one call, four parts fetched in parallel with the caller's token, each under its own
 * deadline. A part that fails or is late is left out and named in `missing` with the code it
 * failed with; the rest is still a valid answer. Only an UNAUTHENTICATED user part fails the whole
 * call: then the token is no good for any part.
 */
export function dashboardService(deps: DashboardDeps): ServiceImpl<typeof DashboardService> {
  return {
    async getDashboard(_req, ctx) {
      const headers = await forwardHeaders(ctx, deps.userTokens);
      const o = { parent: ctx, timeoutMs: deps.partTimeoutMs, headers };
      const [user, tasks, notifications, stats] = await Promise.all([
        settle(deps.users.getMe({}, o)),
        settle(deps.tasks.listTasks({ status: TaskStatus.OPEN, pageSize: PAGE }, o)),
        settle(deps.notifications.listNotifications({ unreadOnly: true, pageSize: PAGE }, o)),
        settle(deps.analytics.getStats({}, o)),
      ]);
      if (!user.ok && user.error.code === Code.Unauthenticated) throw user.error;

      const missing: Omit<MissingPart, "$typeName">[] = [];
      const absent = (part: Part, s: Settled<unknown>) => {
        if (s.ok) return;
        missing.push({ part, code: codeName(s.error.code), message: s.error.rawMessage });
      };
      absent(Part.USER, user);
      absent(Part.TASKS, tasks);
      absent(Part.NOTIFICATIONS, notifications);
      absent(Part.STATS, stats);
      if (missing.length > 0)
        deps.logger.info(
          { requestId: headers[REQUEST_ID_HEADER], missing: missing.map((m) => `${Part[m.part]}:${m.code}`) },
          "dashboard answered without some parts",
        );
      return {
        user: user.ok ? user.value.user : undefined,
        upcomingTasks: tasks.ok ? tasks.value.tasks : [],
        unreadNotifications: notifications.ok ? notifications.value.notifications : [],
        unreadCount: notifications.ok ? notifications.value.unreadCount : 0n,
        stats: stats.ok ? stats.value.stats : undefined,
        missing,
      };
    },
  };
}

async function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    return { ok: false, error: ConnectError.from(e) };
  }
}

/** The caller's token, verified here (a bad one costs no backend hop), and a request id. */
async function forwardHeaders(ctx: HandlerContext, userTokens: UserTokenVerifier): Promise<Record<string, string>> {
  const token = bearerToken(ctx.requestHeader);
  if (!token) throw new ConnectError("authorization: Bearer <token> is required", Code.Unauthenticated);
  await verifyInCall(ctx.values, userTokens, token);
  const incoming = ctx.requestHeader.get(REQUEST_ID_HEADER);
  const requestId = incoming !== null && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  ctx.responseHeader.set(REQUEST_ID_HEADER, requestId);
  return { authorization: `Bearer ${token}`, [REQUEST_ID_HEADER]: requestId };
}
