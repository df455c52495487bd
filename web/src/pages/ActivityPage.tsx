import { useInfiniteQuery } from "@connectrpc/connect-query";
import { AnalyticsService, AuditAction, type AuditEvent } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { ProblemMessage } from "../components/FieldError";
import { describeError } from "../lib/errors";
import { formatInstant, tsMs } from "../lib/time";
import { useZone } from "../lib/use-zone";

const LABELS: Record<AuditAction, string> = {
  [AuditAction.UNSPECIFIED]: "Activity",
  [AuditAction.LOGIN]: "Signed in",
  [AuditAction.LOGIN_FAILED]: "Failed sign-in (wrong password)",
  [AuditAction.LOGOUT]: "Signed out",
  [AuditAction.SESSION_REVOKED]: "Signed out a device",
  [AuditAction.REFRESH_TOKEN_REUSED]: "Session ended: a used sign-in token came back (possible theft)",
  [AuditAction.PREFERENCES_CHANGED]: "Changed preferences",
  [AuditAction.TASK_DELETED]: "Deleted a task",
  [AuditAction.ACCOUNT_DELETION_REQUESTED]: "Asked to delete the account",
  [AuditAction.PROJECT_SHARED]: "Someone joined a project you shared",
  [AuditAction.PROJECT_MEMBER_ROLE_CHANGED]: "Changed a member's role in a project",
  [AuditAction.PROJECT_UNSHARED]: "A member left or was removed from a project",
};

/** The caller's audit log (ListAuditEvents), newest first, a page at a time. Read-only. */
export function ActivityPage() {
  const zone = useZone();
  const q = useInfiniteQuery(
    AnalyticsService.method.listAuditEvents,
    { pageSize: 50, pageToken: "" },
    { pageParamKey: "pageToken", getNextPageParam: (last) => last.nextPageToken || undefined },
  );
  const events = q.data?.pages.flatMap((p) => p.events) ?? [];
  return (
    <section aria-labelledby="activity-h">
      <h1 id="activity-h" tabIndex={-1}>
        Activity
      </h1>
      <p className="hint">Sign-ins, sign-outs and changes to your account and tasks. This log cannot be edited.</p>
      {q.isPending && <p role="status">Loading…</p>}
      {q.error && <ProblemMessage message={`Could not load your activity: ${describeError(q.error).message}`} />}
      {q.isSuccess && events.length === 0 && <p className="empty">No activity recorded yet.</p>}
      <ul className="activity" aria-label="Activity">
        {events.map((e) => (
          <ActivityItem key={e.id} event={e} zone={zone} />
        ))}
      </ul>
      {q.hasNextPage && (
        <button type="button" className="secondary" disabled={q.isFetchingNextPage} onClick={() => q.fetchNextPage()}>
          {q.isFetchingNextPage ? "Loading…" : "Show older"}
        </button>
      )}
    </section>
  );
}

function ActivityItem({ event, zone }: { event: AuditEvent; zone: string }) {
  const at = tsMs(event.occurTime);
  const where = [event.ipAddress, event.userAgent].filter((x) => x !== "").join(" · ");
  return (
    <li data-action={AuditAction[event.action]}>
      <strong>{LABELS[event.action] ?? "Activity"}</strong>
      {at !== undefined && <span className="hint"> {formatInstant(at, zone)}</span>}
      {where && <p className="hint">{where}</p>}
    </li>
  );
}
