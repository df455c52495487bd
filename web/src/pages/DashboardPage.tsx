import { useQuery } from "@connectrpc/connect-query";
import { DashboardService, Part } from "@taskmesh/gen/taskmesh/gateway/v1/dashboard_pb";
import { ProblemMessage } from "../components/FieldError";
import { describeError } from "../lib/errors";
import { formatInstant, tsMs } from "../lib/time";
import { useZone } from "../lib/use-zone";

const PART_NAMES: Record<number, string> = {
  [Part.USER]: "your profile",
  [Part.TASKS]: "upcoming tasks",
  [Part.NOTIFICATIONS]: "notifications",
  [Part.STATS]: "statistics",
};

/** The gateway's BFF dashboard: whatever parts arrived, and a notice naming those that did not. */
export function DashboardPage() {
  const zone = useZone();
  const q = useQuery(DashboardService.method.getDashboard, {}, { refetchInterval: 30_000 });
  const d = q.data;
  const missing = new Set(d?.missing.map((m) => m.part));
  const s = d?.stats;
  return (
    <section aria-labelledby="dash-h">
      <h1 id="dash-h" tabIndex={-1}>
        Dashboard
      </h1>
      {q.isPending && <p>Loading…</p>}
      {q.isError && <ProblemMessage message={`Could not load the dashboard: ${describeError(q.error).message}`} />}
      {d && d.missing.length > 0 && (
        <p role="status" className="notice" data-testid="dashboard-partial">
          Some parts are unavailable right now:{" "}
          {d.missing
            .map((m) => `${PART_NAMES[m.part] ?? "a part"} (${m.code.toLowerCase().replace(/_/g, " ")})`)
            .join(", ")}
          . The rest is up to date.
        </p>
      )}
      {d && (
        <div className="cards">
          <section className="card" aria-labelledby="stats-h">
            <h2 id="stats-h">Statistics</h2>
            {missing.has(Part.STATS) || !s ? (
              <p className="empty">Statistics are unavailable.</p>
            ) : (
              <dl className="stats">
                <dt>Open</dt>
                <dd>{String(s.openCount)}</dd>
                <dt>Completed</dt>
                <dd>{String(s.completedCount)}</dd>
                <dt>Overdue</dt>
                <dd>{String(s.overdueCount)}</dd>
                <dt>Created</dt>
                <dd>{String(s.createdCount)}</dd>
                <dt>Completion rate</dt>
                <dd>{Math.round(s.completionRate * 100)}%</dd>
                <dt>Streak</dt>
                <dd>{s.currentStreakDays} day(s)</dd>
                <dt>Open by priority</dt>
                <dd>
                  {s.priorityCounts
                    .filter((p) => p.openCount > 0n)
                    .map((p) => `P${p.priority}: ${p.openCount}`)
                    .join(" · ") || "none"}
                </dd>
              </dl>
            )}
          </section>
          <section className="card" aria-labelledby="up-h">
            <h2 id="up-h">Upcoming</h2>
            {missing.has(Part.TASKS) ? (
              <p className="empty">Tasks are unavailable.</p>
            ) : d.upcomingTasks.length === 0 ? (
              <p className="empty">Nothing coming up.</p>
            ) : (
              <ul>
                {d.upcomingTasks.map((t) => {
                  const due = tsMs(t.dueTime);
                  return (
                    <li key={t.id}>
                      {t.title}
                      {due !== undefined && <span className="hint"> — {formatInstant(due, t.timeZone || zone)}</span>}
                    </li>
                  );
                })}
              </ul>
            )}
          </section>
          <section className="card" aria-labelledby="unread-h">
            <h2 id="unread-h">Unread notifications</h2>
            {missing.has(Part.NOTIFICATIONS) ? (
              <p className="empty">Notifications are unavailable.</p>
            ) : (
              <>
                <p>{String(d.unreadCount)} unread</p>
                <ul>
                  {d.unreadNotifications.map((n) => (
                    <li key={n.id}>{n.title}</li>
                  ))}
                </ul>
              </>
            )}
          </section>
        </div>
      )}
    </section>
  );
}
