// The web client's service worker, served at /push-sw.js (Vite copies public/ unchanged, so the
// path is stable across builds; the gateway serves it no-cache, so a new build is picked up).
// It shows the reminders notifications pushes (Web Push, payload JSON from
// services/notifications/src/due-events.ts) and opens the app on a click.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: "taskmesh", body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(
    self.registration.showNotification(data.title || "taskmesh", {
      body: data.body || "",
      // One notification per taskmesh notification: a repeated push replaces it.
      tag: data.notification_id || undefined,
      icon: "/favicon.svg",
      data: { url: data.url || "/notifications" },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", self.location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => w.url.startsWith(self.location.origin));
      if (open) return open.navigate(url).then((w) => (w ?? open).focus());
      return self.clients.openWindow(url);
    }),
  );
});
