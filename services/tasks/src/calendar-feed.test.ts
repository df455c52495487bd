import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Priority } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { CalendarFeedInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { createGrpcClient } from "@taskmesh/platform";
import ICAL from "ical.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startTasks } from "./tasks.test-util.js";

const DUE = Date.UTC(2031, 2, 3, 8, 30); // Monday 2031-03-03 09:30 in Berlin (CET, +01:00)

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ConnectError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

/** The feed parsed by ical.js, its VTIMEZONEs registered so start times resolve to instants. */
function parseFeed(text: string) {
  const cal = new ICAL.Component(ICAL.parse(text));
  for (const tz of cal.getAllSubcomponents("vtimezone")) ICAL.TimezoneService.register(tz);
  return cal.getAllSubcomponents("vevent").map((c) => {
    const e = new ICAL.Event(c);
    return {
      uid: e.uid,
      summary: e.summary,
      description: e.description,
      start: e.startDate.toJSDate().getTime(),
      tzid: c.getFirstProperty("dtstart")?.getParameter("tzid"),
      localStart: e.startDate.toString(),
      rrule: c.getFirstPropertyValue("rrule")?.toString(),
      priority: c.getFirstPropertyValue("priority"),
      url: c.getFirstPropertyValue("url"),
      // The first three occurrences, expanded by ical.js from DTSTART + RRULE.
      next3: e.isRecurring()
        ? (() => {
            const it = e.iterator();
            return [it.next(), it.next(), it.next()].map((t) => t?.toJSDate().getTime());
          })()
        : [],
    };
  });
}

describe("calendar feed", () => {
  let h: Harness;
  let feed: ReturnType<typeof createGrpcClient<typeof CalendarFeedInternalService>>;
  const secretOf = (path: string) => /^\/calendar\/([A-Za-z0-9_-]{43})\.ics$/.exec(path)?.[1] ?? "";
  beforeAll(async () => {
    h = await startTasks();
    // No token at all: the secret is the credential.
    feed = createGrpcClient(CalendarFeedInternalService, { address: h.address });
  });
  afterAll(async () => {
    feed.close();
    await h.stop();
  });

  it("renders the caller's open tasks with a due time, in their zone, with RRULE, and leaves the rest out", async () => {
    const c = await h.as(crypto.randomUUID());
    const weekly = (
      await c.createTask({
        task: {
          title: "Standup, weekly",
          notes: "room 2\nbring notes",
          dueTime: timestampFromMs(DUE),
          timeZone: "Europe/Berlin",
          recurrenceRule: "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
          priority: Priority.P1,
        },
      })
    ).task;
    const utc = (await c.createTask({ task: { title: "Pay rent", dueTime: timestampFromMs(DUE + 86_400_000) } })).task;
    await c.createTask({ task: { title: "someday, no due time" } });
    const done = (await c.createTask({ task: { title: "done already", dueTime: timestampFromMs(DUE) } })).task;
    await c.completeTask({ taskId: done?.id ?? "" });

    const { urlPath, createTime } = await c.rotateCalendarFeed({});
    expect(urlPath).toMatch(/^\/calendar\/[A-Za-z0-9_-]{43}\.ics$/);
    expect(createTime).toBeDefined();
    const { calendar } = await feed.renderCalendarFeed({
      secret: secretOf(urlPath),
      appOrigin: "https://todo.example.com",
    });
    const events = parseFeed(calendar);
    expect(events.map((e) => e.summary).sort()).toEqual(["Pay rent", "Standup, weekly"]);

    const standup = events.find((e) => e.uid === `${weekly?.id}@taskmesh`);
    expect(standup).toMatchObject({
      tzid: "Europe/Berlin",
      localStart: "2031-03-03T09:30:00",
      start: DUE,
      description: "room 2\nbring notes",
      rrule: "FREQ=WEEKLY;COUNT=10;BYDAY=MO",
      priority: 1,
      url: `https://todo.example.com/?task=${weekly?.id}`,
    });
    expect(standup?.next3).toEqual([DUE, DUE + 7 * 86_400_000, DUE + 14 * 86_400_000]);
    const rent = events.find((e) => e.uid === `${utc?.id}@taskmesh`);
    expect(rent).toMatchObject({ tzid: undefined, start: DUE + 86_400_000, priority: 9, rrule: undefined });
  });

  it("follows a zone across daylight saving time in the expanded occurrences", async () => {
    const c = await h.as(crypto.randomUUID());
    const due = Date.UTC(2031, 2, 24, 8, 30); // Monday 2031-03-24 09:30 CET
    await c.createTask({
      task: {
        title: "weekly",
        dueTime: timestampFromMs(due),
        timeZone: "Europe/Berlin",
        recurrenceRule: "FREQ=WEEKLY",
      },
    });
    const { urlPath } = await c.rotateCalendarFeed({});
    const [event] = parseFeed((await feed.renderCalendarFeed({ secret: secretOf(urlPath) })).calendar);
    const week = 7 * 86_400_000;
    // 2031-03-31 09:30 CEST is 07:30 UTC: an hour less than a fixed UTC week later.
    expect(event?.next3).toEqual([due, due + week - 3_600_000, due + 2 * week - 3_600_000]);
    expect(event?.url).toBeNull();
  });

  it("renders the same bytes while nothing changes, so the gateway's ETag is stable", async () => {
    const c = await h.as(crypto.randomUUID());
    await c.createTask({ task: { title: "stable", dueTime: timestampFromMs(DUE) } });
    const secret = secretOf((await c.rotateCalendarFeed({})).urlPath);
    const a = (await feed.renderCalendarFeed({ secret })).calendar;
    const b = (await feed.renderCalendarFeed({ secret })).calendar;
    expect(a).toBe(b);
  });

  it("answers NOT_FOUND for a rotated-away or revoked secret, and for one never issued", async () => {
    const c = await h.as(crypto.randomUUID());
    const first = secretOf((await c.rotateCalendarFeed({})).urlPath);
    const second = secretOf((await c.rotateCalendarFeed({})).urlPath);
    expect(second).not.toBe(first);
    expect((await failure(feed.renderCalendarFeed({ secret: first }))).code).toBe(Code.NotFound);
    await feed.renderCalendarFeed({ secret: second });
    expect(await c.getCalendarFeed({})).toMatchObject({ active: true });

    expect(await c.revokeCalendarFeed({})).toMatchObject({ revoked: true });
    expect(await c.revokeCalendarFeed({})).toMatchObject({ revoked: false });
    expect((await failure(feed.renderCalendarFeed({ secret: second }))).code).toBe(Code.NotFound);
    const status = await c.getCalendarFeed({});
    expect(status.active).toBe(false);
    expect(status.createTime).toBeUndefined();
    expect((await failure(feed.renderCalendarFeed({ secret: "A".repeat(43) }))).code).toBe(Code.NotFound);
  });

  it("refuses a malformed secret as INVALID_ARGUMENT naming the field", async () => {
    const err = await failure(feed.renderCalendarFeed({ secret: "../../etc/passwd" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.message).toContain("secret");
  });

  it("keeps only the secret's hash, and shows one user's feed never another's tasks", async () => {
    const alice = await h.as(crypto.randomUUID());
    const bob = await h.as(crypto.randomUUID());
    await alice.createTask({ task: { title: "alice's", dueTime: timestampFromMs(DUE) } });
    await bob.createTask({ task: { title: "bob's", dueTime: timestampFromMs(DUE) } });
    const secret = secretOf((await bob.rotateCalendarFeed({})).urlPath);
    expect(parseFeed((await feed.renderCalendarFeed({ secret })).calendar).map((e) => e.summary)).toEqual(["bob's"]);
    const Database = (await import("better-sqlite3")).default;
    const db = new Database(h.dbPath, { readonly: true });
    try {
      const hashes = db.prepare("SELECT secret_hash FROM calendar_feeds").pluck().all() as Buffer[];
      expect(hashes.every((x) => x.length === 32)).toBe(true);
      expect(hashes.some((x) => x.toString("base64url") === secret)).toBe(false);
    } finally {
      db.close();
    }
  });

  it("purges the feed with the user (account deletion)", async () => {
    const userId = crypto.randomUUID();
    const c = await h.as(userId);
    const secret = secretOf((await c.rotateCalendarFeed({})).urlPath);
    await h.internal().purgeUser({ userId });
    expect((await failure(feed.renderCalendarFeed({ secret }))).code).toBe(Code.NotFound);
  });

  it("requires a user token for the public feed methods", async () => {
    expect((await failure(h.anonymous().rotateCalendarFeed({}))).code).toBe(Code.Unauthenticated);
  });
});
