import type { Transport } from "@connectrpc/connect";
import { TransportProvider } from "@connectrpc/connect-query";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import type { LoginResponse } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import { type Clients, clients, createTransport } from "./api";
import { clearSession, hasStoredSession, loadSession, type Session, saveSession } from "./session";
import { tsMs } from "./time";

interface AppState {
  session: Session | undefined;
  /** Why the user was signed out (token expired, refused), shown on the sign-in screen. */
  signedOutReason: string | undefined;
  signIn(res: LoginResponse): void;
  signOut(reason?: string): void;
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

  const transport = useMemo(
    () =>
      createTransport({
        token: () => sessionRef.current?.token,
        onSignedOut: () => signOut("You were signed out (your session is no longer valid). Sign in again."),
        onReachable: setReachable,
      }),
    [signOut],
  );
  const api = useMemo(() => clients(transport), [transport]);

  // The API has no refresh token: at expiry the person is told, never left on a page that fails.
  useEffect(() => {
    if (!session) return;
    const ms = session.expiresAt - Date.now();
    const t = setTimeout(() => signOut("Your session expired. Sign in again."), Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    return () => clearTimeout(t);
  }, [session, signOut]);

  // Another tab signing in or out.
  useEffect(() => {
    const onStorage = (e: StorageEvent) => {
      if (e.key === "taskmesh.session") setSession(loadSession());
    };
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  }, []);

  const value = useMemo(
    () => ({ session, signedOutReason, signIn, signOut, reachable, api, transport }),
    [session, signedOutReason, signIn, signOut, reachable, api, transport],
  );
  return (
    <Ctx.Provider value={value}>
      <TransportProvider transport={transport}>
        <QueryClientProvider client={queryClient}>{children}</QueryClientProvider>
      </TransportProvider>
    </Ctx.Provider>
  );
}
