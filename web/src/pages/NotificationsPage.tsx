import { useState } from "react";
import { ProblemMessage } from "../components/FieldError";
import { describeError } from "../lib/errors";
import { useNotifications } from "../lib/notifications";
import { formatInstant, tsMs } from "../lib/time";
import { useZone } from "../lib/use-zone";

/** The inbox, fed live by WatchNotifications (see lib/notifications.tsx). */
export function NotificationsPage() {
  const { items, unreadCount, stream, retryIn, markRead, error } = useNotifications();
  const zone = useZone();
  const [problem, setProblem] = useState<string | undefined>();
  const unread = items.filter((n) => !n.readTime).map((n) => n.id);
  const mark = async (ids: string[]) => {
    setProblem(undefined);
    try {
      await markRead(ids);
    } catch (err) {
      setProblem(`Could not mark as read: ${describeError(err).message}`);
    }
  };
  return (
    <section aria-labelledby="notif-h">
      <div className="heading-row">
        <h1 id="notif-h" tabIndex={-1}>
          Notifications
        </h1>
        <button
          type="button"
          className="secondary"
          disabled={unread.length === 0}
          onClick={() => mark(unread.slice(0, 100))}
        >
          Mark all read
        </button>
      </div>
      <p role="status" className="status-line" data-testid="stream-state">
        {unreadCount} unread ·{" "}
        {stream === "live"
          ? "Live"
          : stream === "connecting"
            ? "Connecting…"
            : `Reconnecting${retryIn ? ` in ${retryIn} s` : ""}…`}
      </p>
      {stream === "reconnecting" && error && <p className="hint">Last error: {error}</p>}
      <ProblemMessage message={problem} />
      {items.length === 0 && <p className="empty">No notifications yet. Reminders you set on tasks arrive here.</p>}
      <ul className="notifications" aria-label="Notifications">
        {items.map((n) => {
          const at = tsMs(n.createTime);
          return (
            <li key={n.id} className={n.readTime ? "read" : "unread"}>
              <div>
                <strong>{n.title}</strong>
                {!n.readTime && <span className="tag">new</span>}
                {n.body && <p>{n.body}</p>}
                {at !== undefined && <p className="hint">{formatInstant(at, zone)}</p>}
              </div>
              {!n.readTime && (
                <button type="button" className="secondary" onClick={() => mark([n.id])}>
                  Mark read<span className="sr-only">: {n.title}</span>
                </button>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}
