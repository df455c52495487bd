import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { createLogger, type Db, openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { events, task } from "./reminders.test-util.js";
import { MIGRATIONS, RemindersStore } from "./reminders-store.js";
import { Scheduler, timerEventId } from "./scheduler.js";
import { applyTaskEvent } from "./task-events.js";

const logger = createLogger("reminders-test", { level: "silent" });
const T0 = Date.parse("2030-01-01T09:00:00Z");
const MIN = 60_000;

describe("Scheduler", () => {
  const dir = tempDir("reminders-scheduler-");
  let db: Db;
  let store: RemindersStore;
  let now: number;
  let scheduler: Scheduler;
  const user = randomUUID();

  beforeEach(() => {
    db = openDatabase(join(dir.path, `${randomUUID()}.db`), MIGRATIONS);
    store = new RemindersStore(db);
    now = T0;
    scheduler = new Scheduler({ db, store, logger, now: () => now, batchSize: 2 });
  });
  afterEach(() => {
    scheduler.stop();
    db.close();
  });
  afterAll(() => dir.remove());

  const apply = (e: Envelope) =>
    db.transaction(() => applyTaskEvent({ store, now: () => now, logger, onScheduleChanged: () => {} }, e))();
  const outbox = (): { subject: string; event: Envelope }[] =>
    (db.prepare("SELECT subject, data FROM outbox ORDER BY seq").all() as { subject: string; data: Buffer }[]).map(
      (r) => ({ subject: r.subject, event: fromBinary(EnvelopeSchema, r.data) }),
    );

  it("fires nothing before the fire time, then each timer once as its event in the outbox", () => {
    const t = task({ userId: user, title: "Call mum", due: T0 + 60 * MIN, offsets: [600], version: 1 });
    apply(events.created(t));
    expect(scheduler.tick()).toBe(0);

    now = T0 + 50 * MIN;
    expect(scheduler.tick()).toBe(1);
    expect(scheduler.tick()).toBe(0);
    const [reminder] = outbox();
    expect(reminder?.subject).toBe("taskmesh.reminder.due");
    const r = reminder?.event;
    expect(r?.userId).toBe(user);
    expect(r?.aggregateId).toBe(t.id);
    expect(r?.payload.case).toBe("reminderDue");
    if (r?.payload.case !== "reminderDue") return;
    expect(r.payload.value.title).toBe("Call mum");
    expect(r.payload.value.offsetSeconds).toBe(600n);
    expect(r.payload.value.timeZone).toBe("Europe/Paris");
    expect(timestampMs(r.payload.value.fireTime as NonNullable<typeof r.payload.value.fireTime>)).toBe(T0 + 50 * MIN);
    expect(timestampMs(r.payload.value.dueTime as NonNullable<typeof r.payload.value.dueTime>)).toBe(T0 + 60 * MIN);

    now = T0 + 61 * MIN;
    expect(scheduler.tick()).toBe(1);
    const due = outbox()[1];
    expect(due?.subject).toBe("taskmesh.task.due");
    expect(due?.event.payload.case).toBe("taskDue");
    expect(store.pendingFor(user)).toEqual([]);
  });

  it("fires more timers than one batch holds in one tick, in fire-time order", () => {
    apply(events.created(task({ userId: user, due: T0 + 60 * MIN, offsets: [3000, 2000, 1000], version: 1 })));
    now = T0 + 2 * 60 * MIN;
    expect(scheduler.tick()).toBe(4);
    expect(outbox().map((o) => o.event.type)).toEqual(["reminder.due", "reminder.due", "reminder.due", "task.due"]);
  });

  it("does not fire a timer again when the task is edited after it fired", () => {
    const t = task({ userId: user, due: T0 + 60 * MIN, offsets: [600], version: 1 });
    apply(events.created(t));
    now = T0 + 55 * MIN;
    expect(scheduler.tick()).toBe(1);
    apply(
      events.updated(
        task({ id: t.id, userId: user, title: "new title", due: T0 + 60 * MIN, offsets: [600], version: 2 }),
        ["title"],
      ),
    );
    expect(scheduler.tick()).toBe(0);
    now = T0 + 60 * MIN;
    expect(scheduler.tick()).toBe(1);
    const last = outbox()[1]?.event;
    expect(last?.payload.case === "taskDue" && last.payload.value.title).toBe("new title");
  });

  it("prunes fired timers past the retention horizon, and an edit of the task afterwards fires nothing again", async () => {
    const DAY = 24 * 60 * MIN;
    const t = task({ userId: user, due: T0 + 60 * MIN, offsets: [600], version: 1 });
    apply(events.created(t));
    now = T0 + 60 * MIN;
    expect(scheduler.tick()).toBe(2); // the reminder and task.due
    const rows = () => db.prepare("SELECT count(*) FROM timers").pluck().get();
    now = T0 + 6 * DAY;
    expect(await scheduler.pruneFired()).toBe(0); // within 7 days: kept
    now = T0 + 8 * DAY;
    expect(await scheduler.pruneFired()).toBe(2);
    expect(rows()).toBe(0);
    // Their markers are gone, but the timers can never be planned again: the due time is past the grace.
    apply(
      events.updated(
        task({ id: t.id, userId: user, title: "edited", due: T0 + 60 * MIN, offsets: [600], version: 2 }),
        ["title"],
      ),
    );
    expect(scheduler.tick()).toBe(0);
    expect(outbox()).toHaveLength(2);
  });

  it("refuses a fired-timer retention shorter than twice the overdue grace", () => {
    expect(() => new Scheduler({ db, store, logger, now: () => now, firedRetentionMs: 24 * 60 * MIN })).toThrow(
      /firedRetentionMs must be at least/,
    );
  });

  it("fires task.due at once for a task created overdue, and a late reminder when the due time is still ahead", () => {
    apply(events.created(task({ userId: user, due: T0 - 5 * MIN, offsets: [600], version: 1 })));
    apply(events.created(task({ userId: user, due: T0 + 5 * MIN, offsets: [600], version: 1 })));
    expect(scheduler.tick()).toBe(2);
    expect(outbox().map((o) => o.event.type)).toEqual(["task.due", "reminder.due"]);
  });

  it("derives the event id from the timer, so the same timer always fires under the same id", () => {
    apply(events.created(task({ userId: user, due: T0 + 60 * MIN, version: 1 })));
    now = T0 + 60 * MIN;
    scheduler.tick();
    const [only] = store.pendingFor(user);
    expect(only).toBeUndefined();
    const fired = db
      .prepare(
        "SELECT task_id AS taskId, kind, offset_seconds AS offsetSeconds, due_time AS dueTime, event_id AS eventId FROM timers",
      )
      .get() as {
      taskId: string;
      kind: "due";
      offsetSeconds: number;
      dueTime: number;
      eventId: string;
    };
    expect(fired.eventId).toBe(timerEventId(fired));
    expect(outbox()[0]?.event.id).toBe(fired.eventId);
    expect(fired.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("wakes by itself at the next fire time once started", async () => {
    now = Date.now();
    scheduler = new Scheduler({ db, store, logger, now: Date.now });
    scheduler.start();
    apply(events.created(task({ userId: user, due: Date.now() + 150, version: 1 })));
    scheduler.wake();
    const deadline = Date.now() + 5000;
    while (outbox().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(outbox().map((o) => o.event.type)).toEqual(["task.due"]);
  });
});
