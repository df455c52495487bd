import { createECDH, randomBytes } from "node:crypto";
import { connect, constants } from "node:http2";
import { Code } from "@connectrpc/connect";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import ICAL from "ical.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Api,
  connectJsonApi,
  type E2E,
  fails,
  grpcApi,
  type JsonObject,
  ok,
  signUp,
  startE2E,
} from "./harness.js";

let e2e: E2E;
let api: Api;
let gateway: string;
beforeAll(async () => {
  // Only what the feed and the push API need. A small per-address allowance, so the last test can run into it
  // without hundreds of requests.
  e2e = await startE2E({
    services: ["users", "tasks", "notifications", "gateway"],
    env: { CALENDAR_RATE_LIMIT_PER_MINUTE: "600", CALENDAR_RATE_LIMIT_BURST: "10" },
  });
  gateway = e2e.system.endpoints.gateway;
  api = connectJsonApi(gateway);
});
afterAll(async () => {
  await e2e?.stop();
});

/** GET over HTTP/2 (h2c, prior knowledge), as a calendar app speaking HTTP/2 would. */
function getH2(url: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const session = connect(u.origin);
    session.on("error", reject);
    const req = session.request({ ":path": u.pathname, ":method": "GET" });
    let headers: Record<string, unknown> = {};
    let body = "";
    req.setEncoding("utf8");
    req.on("response", (h) => {
      headers = h;
    });
    req.on("data", (d: string) => {
      body += d;
    });
    req.on("end", () => {
      session.close();
      resolve({ status: Number(headers[constants.HTTP2_HEADER_STATUS]), headers, body });
    });
    req.on("error", reject);
    req.end();
  });
}

function events(text: string) {
  const cal = new ICAL.Component(ICAL.parse(text));
  for (const tz of cal.getAllSubcomponents("vtimezone")) ICAL.TimezoneService.register(tz);
  return cal.getAllSubcomponents("vevent").map((c) => {
    const e = new ICAL.Event(c);
    return {
      summary: e.summary,
      start: e.startDate.toJSDate().toISOString(),
      tzid: c.getFirstProperty("dtstart")?.getParameter("tzid"),
      rrule: c.getFirstPropertyValue("rrule")?.toString(),
    };
  });
}

describe("calendar feed through the gateway", () => {
  it("serves the user's due open tasks as text/calendar over HTTP/1.1 and HTTP/2, and 304 on a matching ETag", async () => {
    const me = await signUp(api);
    const create = (task: JsonObject) => api.call(TaskService.method.createTask, { task }, me.token);
    ok(
      await create({
        title: "Water the plants",
        dueTime: "2031-06-02T16:00:00Z",
        timeZone: "America/New_York",
        recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
      }),
    );
    ok(await create({ title: "File taxes", dueTime: "2031-04-15T09:00:00Z" }));
    const done = ok(await create({ title: "Old chore", dueTime: "2031-01-01T09:00:00Z" })).task as { id: string };
    ok(await api.call(TaskService.method.completeTask, { taskId: done.id }, me.token));
    const { urlPath } = ok(await api.call(TaskService.method.rotateCalendarFeed, {}, me.token)) as { urlPath: string };

    const res = await fetch(`${gateway}${urlPath}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/calendar; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("private, max-age=300");
    const etag = res.headers.get("etag");
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    const text = await res.text();
    expect(events(text)).toEqual([
      { summary: "File taxes", start: "2031-04-15T09:00:00.000Z", tzid: undefined, rrule: undefined },
      // 12:00 in New York (EDT, -04:00) in the zone's own terms.
      {
        summary: "Water the plants",
        start: "2031-06-02T16:00:00.000Z",
        tzid: "America/New_York",
        rrule: "FREQ=WEEKLY;BYDAY=MO",
      },
    ]);
    expect(text).toContain("DTSTART;TZID=America/New_York:20310602T120000");
    expect(text).toContain("BEGIN:VTIMEZONE");

    const again = await fetch(`${gateway}${urlPath}`, { headers: { "if-none-match": etag ?? "" } });
    expect(again.status).toBe(304);

    const h2 = await getH2(`${gateway}${urlPath}`);
    expect(h2.status).toBe(200);
    expect(h2.headers["content-type"]).toBe("text/calendar; charset=utf-8");
    expect(h2.body).toBe(text);
  });

  it("answers 404 for a rotated-away, a revoked, a never-issued and a malformed secret", async () => {
    const me = await signUp(api);
    const first = (ok(await api.call(TaskService.method.rotateCalendarFeed, {}, me.token)) as { urlPath: string })
      .urlPath;
    const second = (ok(await api.call(TaskService.method.rotateCalendarFeed, {}, me.token)) as { urlPath: string })
      .urlPath;
    expect((await fetch(`${gateway}${first}`)).status).toBe(404);
    expect((await fetch(`${gateway}${second}`)).status).toBe(200);
    ok(await api.call(TaskService.method.revokeCalendarFeed, {}, me.token));
    const revoked = await fetch(`${gateway}${second}`);
    expect(revoked.status).toBe(404);
    expect(revoked.headers.get("cache-control")).toBe("no-store");
    expect((await fetch(`${gateway}/calendar/${"x".repeat(43)}.ics`)).status).toBe(404);
    expect((await fetch(`${gateway}/calendar/nope.ics`)).status).toBe(404);
    expect(ok(await api.call(TaskService.method.getCalendarFeed, {}, me.token))).toEqual({});
  });

  it("does not expose the renderer at the edge", async () => {
    const res = await fetch(`${gateway}/taskmesh.tasks.v1.CalendarFeedInternalService/RenderCalendarFeed`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret: "x".repeat(43) }),
    });
    expect(res.status).toBe(404);
  });

  it("limits feed requests per client address with 429 and Retry-After", async () => {
    const statuses = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const r = await fetch(`${gateway}/calendar/${"y".repeat(43)}.ics`);
        return { status: r.status, retryAfter: r.headers.get("retry-after") };
      }),
    );
    const limited = statuses.filter((s) => s.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(Number(limited[0]?.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(statuses.filter((s) => s.status === 404).length).toBeGreaterThan(0);
  });
});

describe.each([
  ["gRPC over h2c", () => grpcApi(gateway)],
  ["Connect JSON over HTTP/1.1", () => connectJsonApi(gateway)],
])("Web Push subscriptions through the gateway with %s", (_, makeApi) => {
  it("gives the VAPID key, registers a device, lists and deletes it, and refuses a plain-http endpoint", async () => {
    const client = makeApi();
    const me = await signUp(client);
    const { vapidPublicKey } = ok(await client.call(NotificationService.method.getPushConfig, {}, me.token)) as {
      vapidPublicKey: string;
    };
    expect(Buffer.from(vapidPublicKey, "base64url")).toHaveLength(65);
    const device = {
      endpoint: `https://push.example.com/send/${me.userId}`,
      p256dh: createECDH("prime256v1").generateKeys().toString("base64url"),
      auth: randomBytes(16).toString("base64url"),
      deviceName: "e2e browser",
    };
    const sub = ok(await client.call(NotificationService.method.registerPushSubscription, device, me.token))
      .subscription as JsonObject;
    expect(sub).toMatchObject({ endpoint: device.endpoint, deviceName: "e2e browser" });
    const listed = ok(await client.call(NotificationService.method.listPushSubscriptions, {}, me.token));
    expect((listed.subscriptions as JsonObject[]).map((x) => x.id)).toEqual([sub.id]);
    ok(
      await client.call(
        NotificationService.method.deletePushSubscription,
        { subscriptionId: sub.id as string },
        me.token,
      ),
    );
    expect(ok(await client.call(NotificationService.method.listPushSubscriptions, {}, me.token))).toEqual({});
    fails(
      await client.call(
        NotificationService.method.registerPushSubscription,
        { ...device, endpoint: "http://push.example.com/x" },
        me.token,
      ),
      Code.InvalidArgument,
      /endpoint must be an https URL/,
    );
  });
});
