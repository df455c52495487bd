import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { requireUser } from "@taskmesh/platform";
import type { AnalyticsStore } from "./analytics-store.js";
import type { AuditCursor } from "./audit-log.js";
import { ftsQuery } from "./search-query.js";

export interface AnalyticsServiceDeps {
  store: AnalyticsStore;
  /** Current time in epoch ms (overdue, today's streak). Default Date.now. */
  clock?: () => number;
}

/** Hits when the request says 0 (the contract allows 1–50). */
export const DEFAULT_SEARCH_LIMIT = 20;
/** Audit entries per page when the request says 0 (the contract allows 1–100). */
export const DEFAULT_AUDIT_PAGE_SIZE = 50;

/**
 * The public AnalyticsService: the caller's numbers and search, always scoped by the user of the
 * verified token (`requireUser`), never by a request field. Answers come from the read models
 * alone, so they trail the tasks service by the events still in flight (`as_of_time` says how far
 * they reach).
 */
export function analyticsService(deps: AnalyticsServiceDeps): ServiceImpl<typeof AnalyticsService> {
  const { store } = deps;
  const now = deps.clock ?? Date.now;
  return {
    async getStats(_req, ctx) {
      const { userId } = requireUser(ctx);
      const s = store.stats(userId, now());
      return {
        stats: {
          createdCount: BigInt(s.created),
          completedCount: BigInt(s.completed),
          openCount: BigInt(s.open),
          overdueCount: BigInt(s.overdue),
          completionRate: s.completionRate,
          currentStreakDays: s.currentStreakDays,
          ...(s.asOfMs !== undefined ? { asOfTime: timestampFromMs(s.asOfMs) } : {}),
          priorityCounts: s.byPriority.map((p) => ({
            priority: p.priority,
            openCount: BigInt(p.open),
            completedCount: BigInt(p.completed),
          })),
          projectCounts: s.byProject.map((p) => ({
            projectId: p.id,
            openCount: BigInt(p.open),
            completedCount: BigInt(p.completed),
          })),
          labelCounts: s.byLabel.map((l) => ({
            labelId: l.id,
            openCount: BigInt(l.open),
            completedCount: BigInt(l.completed),
          })),
        },
      };
    },

    async searchTasks(req, ctx) {
      const { userId } = requireUser(ctx);
      // Another user's project or label is NOT_FOUND, like one that does not exist (BOLA).
      for (const [kind, id, field] of [
        ["project", req.projectId, "project_id"],
        ["label", req.labelId, "label_id"],
      ] as const)
        if (id && !store.owns(userId, kind, id.toLowerCase()))
          throw new ConnectError(`${field}: ${kind} ${id} not found`, Code.NotFound);
      const match = ftsQuery(req.query);
      if (!match) return { hits: [] };
      const filter = {
        ...(req.projectId ? { projectId: req.projectId.toLowerCase() } : {}),
        ...(req.labelId ? { labelId: req.labelId.toLowerCase() } : {}),
      };
      return { hits: store.search(userId, match, req.limit || DEFAULT_SEARCH_LIMIT, filter) };
    },

    async listAuditEvents(req, ctx) {
      const { userId } = requireUser(ctx);
      const cursor = req.pageToken === "" ? undefined : parseAuditToken(req.pageToken);
      const page = store.auditPage(userId, req.pageSize || DEFAULT_AUDIT_PAGE_SIZE, cursor);
      return {
        events: page.entries.map((e) => ({
          id: e.eventId,
          action: e.action,
          occurTime: timestampFromMs(e.occurredMs),
          ipAddress: e.ipAddress,
          userAgent: e.userAgent,
          sessionId: e.sessionId,
          resourceId: e.resourceId,
        })),
        nextPageToken: page.next ? Buffer.from(`${page.next.occurredMs}.${page.next.seq}`).toString("base64url") : "",
      };
    },
  };
}

/** A next_page_token back to its cursor; anything else is INVALID_ARGUMENT naming the field. */
function parseAuditToken(token: string): AuditCursor {
  const m = /^(\d{1,16})\.(\d{1,16})$/.exec(Buffer.from(token, "base64url").toString());
  if (!m) {
    throw new ConnectError(
      "invalid request: page_token: not a token from ListAuditEvents (pass next_page_token unchanged)",
      Code.InvalidArgument,
    );
  }
  return { occurredMs: Number(m[1]), seq: Number(m[2]) };
}
