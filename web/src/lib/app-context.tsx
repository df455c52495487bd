import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { TransportProvider } from "@connectrpc/connect-query";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import type { LoginResponse } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import { type Clients, clients, createTransport } from "./api";
import { isNetworkFailure } from "./errors";
import {
  clearSession,
  hasStoredSession,
  loadSession,
  refreshDelayMs,
  SESSION_STORAGE_KEY,
  type Session,
  saveSession,
} from "./session";
import { tsMs } from "./time";

/** Refusals of a refresh that say nothing about the session itself: it is tried again, not ended. */
const PASSING = new Set([
  Code.Unavailable,
  Code.ResourceExhausted,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Canceled,
  Code.Internal,
  Code.Unknown,
]);

interface AppState {
  session: Session | undefined;
  /** Why the user was signed out (token expired, refused), shown on the sign-in screen. */
  signedOutReason: string | undefined;
  signIn(res: LoginResponse): void;
  signOut(reason?: string): void;
  /** Revokes this session at the server (Logout), then signs out here. */
  logOut(): Promise<void>;
  /** False while the gateway cannot be reached (a banner says so). */
  reachable: boolean;
  api: Clients;
  transport: Transport;
}

const Ctx = createContext<AppState | undefined>(undefined);

export function useApp(): AppState {
  const v = useContext(Ctx);
  if (!v) throw new Error("useApp outside AppProvider");
  return v;
}

export function AppProvider({ children }: { children: ReactNode }) {
  // Read once: loadSession drops an expired session, which is then reported as such.
  // An access token that expired while the page was closed is renewed at once (refreshDelayMs).
  const [initial] = useState(() => {
    const stored = hasStoredSession();
    const s = loadSession();
    return { s, expired: stored && !s };
  });
  const [session, setSession] = useState<Session | undefined>(initial.s);
  const [signedOutReason, setReason] = useState<string | undefined>(
    initial.expired ? "Your session expired. Sign in again." : undefined,
  );
  const [reachable, setReachable] = useState(true);
  const sessionRef = useRef(session);
  sessionRef.current = session;
  const queryClient = useMemo(
    () =>
      new QueryClient({
        defaultOptions: {
          queries: { retry: 1, staleTime: 5_000, refetchOnWindowFocus: true },
        },
      }),
    [],
  );

  const signOut = useCallback(
    (reason?: string) => {
      clearSession();
      setSession(undefined);
      setReason(reason);
      queryClient.clear();
    },
    [queryClient],
  );
  const signIn = useCallback(
    (res: LoginResponse) => {
      const s: Session = {
        token: res.accessToken,
        expiresAt: tsMs(res.expireTime) ?? Date.now() + 3600_000,
        refreshToken: res.refreshToken,
        refreshExpiresAt: tsMs(res.refreshExpireTime) ?? Date.now() + 3600_000,
        sessionId: res.sessionId,
        userId: res.user?.id ?? "",
        email: res.user?.email ?? "",
      };
      queryClient.clear();
      saveSession(s);
      setReason(undefined);
      setSession(s);
    },
    [queryClient],
  );

  // Filled below, once the API clients exist (the transport's hook needs it first).
  const refreshRef = useRef<() => Promise<boolean>>(async () => false);
  const transport = useMemo(
    () =>
      createTransport({
        token: () => sessionRef.current?.token,
        // The access token was refused (expired, or its session revoked): one refresh decides.
        onUnauthenticated: () => void refreshRef.current(),
        onReachable: setReachable,
      }),
    [],
  );
  const api = useMemo(() => clients(transport), [transport]);

  // Refreshes failed in a row for a passing reason; each failure schedules the next try (below).
  const [refreshFailures, setRefreshFailures] = useState(0);
  const inflight = useRef<Promise<boolean> | undefined>(undefined);
  const refresh = useCallback((): Promise<boolean> => {
    const run = async (): Promise<boolean> => {
      const stored = loadSession();
      if (!stored) {
        signOut("Your session expired. Sign in again.");
        return false;
      }
      if (!stored.refreshToken) {
        // A session stored before refresh tokens existed: nothing to renew it with.
        signOut("You were signed out (your session is no longer valid). Sign in again.");
        return false;
      }
      // Another tab rotated the refresh token already: use what it stored (spending ours again
      // would look like a stolen token and end the session everywhere).
      if (stored.refreshToken !== sessionRef.current?.refreshToken) {
        setSession(stored);
        setRefreshFailures(0);
        return true;
      }
      try {
        const res = await api.users.refreshSession({ refreshToken: stored.refreshToken });
        const next: Session = {
          ...stored,
          token: res.accessToken,
          expiresAt: tsMs(res.expireTime) ?? Date.now() + 3600_000,
          refreshToken: res.refreshToken,
          refreshExpiresAt: tsMs(res.refreshExpireTime) ?? stored.refreshExpiresAt,
        };
        saveSession(next);
        setSession(next);
        setRefreshFailures(0);
        return true;
      } catch (err) {
        const e = ConnectError.from(err);
        if (e.code === Code.Unauthenticated) {
          signOut(`You were signed out: ${e.rawMessage.replace(/: sign in again$/, "")}. Sign in again.`);
        } else if (isNetworkFailure(e) || PASSING.has(e.code)) {
          // Unreachable, users down or restarting, rate limited: the refresh token is still good
          // (an answer that spent it would have arrived), so keep it and try again later.
          setRefreshFailures((n) => n + 1);
        } else {
          signOut("You were signed out (your session could not be renewed). Sign in again.");
        }
        return false;
      }
    };
    // One refresh at a time, across tabs too (Web Locks), so a refresh token is spent once.
    inflight.current ??= (navigator.locks ? navigator.locks.request("taskmesh.refresh", run) : run()).finally(() => {
      inflight.current = undefined;
    });
    return inflight.current;
  }, [api, signOut]);
  refreshRef.current = refresh;

  const logOut = useCallback(async () => {
    try {
      await api.users.logout({});
    } catch {
      // Signed out here regardless; the session expires on its own at the server.
    }
    signOut();
  }, [api, signOut]);

  // Renew the access token a minute before it expires; after a failure for a passing reason, again
  // in 5 s, 10 s, 20 s … (at most a minute apart).
  useEffect(() => {
    if (!session) return;
    const backoff = refreshFailures === 0 ? 0 : Math.min(60_000, 5_000 * 2 ** (refreshFailures - 1));
    const t = setTimeout(() => void refresh(), Math.min(Math.max(refreshDelayMs(session), backoff), 2 ** 31 - 1));
    return () => clearTimeout(t);
  }, [session, refresh, refreshFailures]);

  // Another tab signing in or out.
  useEffect(() => {
    const onStorage = (e: StorageEvent) => {
      if (e.key === SESSION_STORAGE_KEY) setSession(loadSession());
    };
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  }, []);

  const value = useMemo(
    () => ({ session, signedOutReason, signIn, signOut, logOut, reachable, api, transport }),
    [session, signedOutReason, signIn, signOut, logOut, reachable, api, transport],
  );
  return (
    <Ctx.Provider value={value}>
      <TransportProvider transport={transport}>
        <QueryClientProvider client={queryClient}>{children}</QueryClientProvider>
      </TransportProvider>
    </Ctx.Provider>
  );
}
