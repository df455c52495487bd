import { useEffect, useState } from "react";

/** The app's screens, each a real URL (the gateway answers any of them with index.html). */
export const ROUTES = {
  "/": "Tasks",
  "/dashboard": "Dashboard",
  "/search": "Search",
  "/notifications": "Notifications",
  "/activity": "Activity",
  "/settings": "Settings",
} as const;
export type Route = keyof typeof ROUTES;

function current(): Route {
  const p = window.location.pathname.replace(/\/+$/, "") || "/";
  return (p in ROUTES ? p : "/") as Route;
}

export function navigate(to: Route): void {
  if (window.location.pathname !== to) window.history.pushState(null, "", to);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState<Route>(current);
  useEffect(() => {
    const on = () => setRoute(current());
    window.addEventListener("popstate", on);
    return () => window.removeEventListener("popstate", on);
  }, []);
  return route;
}
