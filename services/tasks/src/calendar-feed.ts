import { createHash, randomBytes } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { TZDate } from "@date-fns/tz";
import type { CalendarFeedInternalService, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { getVtimezoneComponent } from "@touch4it/ical-timezones";
import ical from "ical-generator";
import type { TaskRecord } from "./task-record.js";
import { liveUser, type TaskServiceDeps } from "./task-service-deps.js";

/** Where the gateway serves a feed: GET /calendar/<secret>.ics. */
export const CALENDAR_PATH_PREFIX = "/calendar/";

/** 32 random bytes, base64url: 43 characters (the contract's pattern for RenderCalendarFeed). */
function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * SHA-256 of the secret, the only form stored. Lookups compare hashes (an index equality), so
 * the time a lookup takes depends on the hash of a guess, which a guesser cannot steer.
 */
export function secretHash(secret: string): Buffer {
  return createHash("sha256").update(secret).digest();
}

/** The public calendar-feed methods of TaskService, for the caller's own feed. */
export function calendarFeedMethods(
  deps: TaskServiceDeps,
): Pick<ServiceImpl<typeof TaskService>, "rotateCalendarFeed" | "revokeCalendarFeed" | "getCalendarFeed"> {
  const { store } = deps;
  const now = deps.clock ?? Date.now;
  return {
    async rotateCalendarFeed(_req, ctx) {
      const userId = liveUser(store, ctx);
      const secret = newSecret();
      const t = now();
      store.setCalendarFeed(userId, secretHash(secret), t);
      return { urlPath: `${CALENDAR_PATH_PREFIX}${secret}.ics`, createTime: timestampFromMs(t) };
    },
    async revokeCalendarFeed(_req, ctx) {
      return { revoked: store.deleteCalendarFeed(liveUser(store, ctx)) };
    },
    async getCalendarFeed(_req, ctx) {
      const feed = store.calendarFeed(liveUser(store, ctx));
      return feed ? { active: true, createTime: timestampFromMs(feed.createTime) } : { active: false };
    },
  };
}

/** The mesh-only feed renderer the gateway calls; the secret is the credential. */
export function calendarFeedInternalService(deps: TaskServiceDeps): ServiceImpl<typeof CalendarFeedInternalService> {
  const { store } = deps;
  return {
    async renderCalendarFeed(req) {
      const userId = store.calendarFeedUser(secretHash(req.secret));
      // Unknown and revoked secrets are the same answer.
      if (!userId || store.isDeletedUser(userId)) throw new ConnectError("no such calendar feed", Code.NotFound);
      return { calendar: renderCalendar(store.calendarTasks(userId), req.appOrigin) };
    },
  };
}

/**
 * RFC 5545 PRIORITY is 1 (highest) .. 9 (lowest), 0 undefined; CUAs read 1–4 as high, 5 as
 * medium, 6–9 as low (RFC 5545 3.8.1.9). P1 → 1, P2 → 3, P3 → 5, P4 → 9.
 */
const ICAL_PRIORITY = { 1: 1, 2: 3, 3: 5, 4: 9 } as const;

/**
 * One VEVENT per task (open, with a due time: the store's calendarTasks). DTSTART is the due
 * time in the task's zone with TZID and a VTIMEZONE per zone used (UTC without), and no DTEND
 * (RFC 5545 3.6.1: a DATE-TIME start alone is an event at that instant). DTSTAMP is the task's
 * update time, which RFC 5545 3.8.7.2 allows without METHOD, so an unchanged feed renders the
 * same bytes (a stable ETag at the gateway).
 */
export function renderCalendar(tasks: readonly TaskRecord[], appOrigin: string): string {
  const cal = ical({
    name: "taskmesh",
    prodId: { company: "taskmesh", product: "tasks", language: "EN" },
    timezone: { name: null, generator: getVtimezoneComponent },
  });
  for (const t of tasks) {
    const zone = t.timeZone || undefined;
    const due = t.dueTime as number;
    cal.createEvent({
      id: `${t.id}@taskmesh`,
      start: zone ? new TZDate(due, zone) : new Date(due),
      ...(zone ? { timezone: zone } : {}),
      stamp: new Date(t.updateTime),
      summary: t.title,
      ...(t.notes ? { description: t.notes } : {}),
      priority: ICAL_PRIORITY[t.priority],
      sequence: t.version - 1,
      ...(t.recurrenceRule ? { repeating: recurrenceLines(t.recurrenceRule) } : {}),
      // The web client has no page per task yet: the link opens its task list.
      ...(appOrigin ? { url: `${appOrigin}/?task=${t.id}` } : {}),
    });
  }
  return cal.toString();
}

/** The stored rule ("FREQ=..." or "RRULE:FREQ=...", maybe EXDATE lines) as content lines. */
function recurrenceLines(rule: string): string {
  return rule
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => (/^[A-Z-]+[:;]/.test(l) && !l.startsWith("FREQ=") ? l : `RRULE:${l}`))
    .join("\r\n");
}
