import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useRef } from "react";
import { useApp } from "./app-context";
import { backoffMs } from "./notifications";

/**
 * While `projectId` is set, WatchProject on it: `onChange` runs on each change another member (or
 * this tab) commits, and once more after each reconnect (changes made while disconnected are not
 * replayed, so the caller refetches). Reconnects with the notifications stream's backoff; stops
 * for good when the project is gone or the caller lost access (NOT_FOUND, PERMISSION_DENIED),
 * after a last `onChange` so the lists catch up.
 */
export function useProjectWatch(projectId: string, onChange: () => void): void {
  const { api, session } = useApp();
  const latest = useRef(onChange);
  latest.current = onChange;
  useEffect(() => {
    if (!session || !projectId) return;
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
      let first = true;
      while (!signal.aborted) {
        try {
          const watch = api.tasks.watchProject({ projectId }, { signal });
          if (!first) latest.current();
          first = false;
          for await (const _ of watch) {
            attempt = 0;
            latest.current();
          }
        } catch (err) {
          if (signal.aborted) return;
          const code = err instanceof ConnectError ? err.code : undefined;
          if (code === Code.NotFound || code === Code.PermissionDenied) {
            latest.current();
            return;
          }
        }
        if (signal.aborted) return;
        await sleep(backoffMs(attempt++));
      }
    })();
    return () => stop.abort();
  }, [api, session, projectId]);
}
