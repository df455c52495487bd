import { useEffect, useRef } from "react";
import { ErrorBoundary } from "./components/ErrorBoundary";
import { useApp } from "./lib/app-context";
import { NotificationsProvider, useNotifications } from "./lib/notifications";
import { navigate, ROUTES, type Route, useRoute } from "./lib/router";
import { ActivityPage } from "./pages/ActivityPage";
import { AuthPage } from "./pages/AuthPage";
import { DashboardPage } from "./pages/DashboardPage";
import { NotificationsPage } from "./pages/NotificationsPage";
import { SearchPage } from "./pages/SearchPage";
import { SettingsPage } from "./pages/SettingsPage";
import { TasksPage } from "./pages/TasksPage";

export function App() {
  const { session, reachable } = useApp();
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      {!reachable && (
        <div className="banner" role="alert">
          Cannot reach the taskmesh server. Your changes are not saved until it is back; retrying…
        </div>
      )}
      <ErrorBoundary>
        {session ? (
          <NotificationsProvider>
            <SignedIn />
          </NotificationsProvider>
        ) : (
          <AuthPage />
        )}
      </ErrorBoundary>
    </>
  );
}

function SignedIn() {
  const route = useRoute();
  const { session, logOut } = useApp();
  const { unreadCount, latest } = useNotifications();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  // Focus follows navigation (the new screen's heading is read out), except on first load.
  useEffect(() => {
    document.title = `${ROUTES[route]} · taskmesh`;
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [route]);

  return (
    <>
      <header className="top">
        <span className="brand">taskmesh</span>
        <nav aria-label="Main">
          <ul>
            {(Object.keys(ROUTES) as Route[]).map((r) => (
              <li key={r}>
                <a
                  href={r}
                  aria-current={route === r ? "page" : undefined}
                  onClick={(e) => {
                    e.preventDefault();
                    navigate(r);
                  }}
                >
                  {ROUTES[r]}
                  {r === "/notifications" && unreadCount > 0 && (
                    <span className="badge" data-testid="unread-count">
                      {" "}
                      {unreadCount}
                      <span className="sr-only"> unread</span>
                    </span>
                  )}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span className="who">
          <span className="email">{session?.email}</span>
          <button type="button" className="link" onClick={() => void logOut()}>
            Sign out
          </button>
        </span>
      </header>
      <div className="sr-only" aria-live="polite">
        {latest ? `New notification: ${latest.title}` : ""}
      </div>
      <main id="main" ref={main}>
        {route === "/" && <TasksPage />}
        {route === "/dashboard" && <DashboardPage />}
        {route === "/search" && <SearchPage />}
        {route === "/notifications" && <NotificationsPage />}
        {route === "/activity" && <ActivityPage />}
        {route === "/settings" && <SettingsPage />}
      </main>
    </>
  );
}
