import type { Notification } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useState } from "react";
import { useApp } from "./app-context";
import { describeError } from "./errors";

export type StreamState = "connecting" | "live" | "reconnecting";

interface NotificationsState {
  items: Notification[];
  unreadCount: number;
  stream: StreamState;
  /** Seconds until the next reconnect attempt, while reconnecting. */
  retryIn: number | undefined;
  /** The latest notification that arrived live (announced to screen readers). */
  latest: Notification | undefined;
  markRead(ids: string[]): Promise<void>;
  error: string | undefined;
}

const Ctx = createContext<NotificationsState | undefined>(undefined);
export function useNotifications(): NotificationsState {
  const v = useContext(Ctx);
  if (!v) throw new Error("useNotifications outside NotificationsProvider");
  return v;
}

/** Reconnect delays: 0.5 s doubling to 30 s, with full jitter so many tabs do not reconnect in step. */
export function backoffMs(attempt: number): number {
  const cap = Math.min(30_000, 500 * 2 ** attempt);
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

/**
 * The inbox: ListNotifications for what is there, then WatchNotifications (a server stream) for
 * what arrives. When the stream ends or fails (gateway restart, network), it reconnects with
 * backoff and lists again first, so nothing sent meanwhile is missed.
 */
export function NotificationsProvider({ children }: { children: ReactNode }) {
  const { api, session } = useApp();
  const [items, setItems] = useState<Notification[]>([]);
  const [unreadCount, setUnread] = useState(0);
  const [stream, setStream] = useState<StreamState>("connecting");
  const [retryIn, setRetryIn] = useState<number | undefined>();
  const [latest, setLatest] = useState<Notification | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    if (!session) return;
    const stop = new AbortController();
    const { signal } = stop;
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          resolve();
        });
      });
    (async () => {
      let attempt = 0;
      while (!signal.aborted) {
        try {
          const list = await api.notifications.listNotifications({ pageSize: 50 }, { signal });
          setItems(list.notifications);
          setUnread(Number(list.unreadCount));
          setError(undefined);
          const watch = api.notifications.watchNotifications({}, { signal });
          setStream("live");
          setRetryIn(undefined);
          attempt = 0;
          for await (const res of watch) {
            const n = res.notification;
            if (!n) continue;
            setItems((prev) => (prev.some((p) => p.id === n.id) ? prev : [n, ...prev]));
            if (!n.readTime) setUnread((c) => c + 1);
            setLatest(n);
          }
        } catch (err) {
          if (signal.aborted) return;
          setError(describeError(err).message);
        }
        if (signal.aborted) return;
        setStream("reconnecting");
        const wait = backoffMs(attempt++);
        setRetryIn(Math.ceil(wait / 1000));
        await sleep(wait);
      }
    })();
    return () => stop.abort();
  }, [api, session]);

  const markRead = useCallback(
    async (ids: string[]) => {
      if (ids.length === 0) return;
      const before = items;
      const now = { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 };
      // Optimistic: shown read at once, rolled back if the call fails.
      setItems((prev) => prev.map((n) => (ids.includes(n.id) ? ({ ...n, readTime: now } as Notification) : n)));
      try {
        const res = await api.notifications.markRead({ notificationIds: ids });
        setUnread(Number(res.unreadCount));
      } catch (err) {
        setItems(before);
        throw err;
      }
    },
    [api, items],
  );

  const value = useMemo(
    () => ({ items, unreadCount, stream, retryIn, latest, markRead, error }),
    [items, unreadCount, stream, retryIn, latest, markRead, error],
  );
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}
