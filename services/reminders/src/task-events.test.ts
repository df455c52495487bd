import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  LabelDeletedSchema,
  ProjectDeletedSchema,
  ProjectMemberRemovedSchema,
} from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { createLogger, type Db, newEvent, openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { consumers } from "./events.js";
import { events, task } from "./reminders.test-util.js";
import { MIGRATIONS, RemindersStore } from "./reminders-store.js";
import { applyTaskEvent, type TaskEventsDeps } from "./task-events.js";

const logger = createLogger("reminders-test", { level: "silent" });
const T0 = Date.parse("2030-01-01T09:00:00Z");
const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

describe("task events → timers", () => {
  const dir = tempDir("reminders-unit-");
  let db: Db;
  let store: RemindersStore;
  let now: number;
  let wakes: number;
  let deps: TaskEventsDeps;
  const user = randomUUID();

  beforeEach(() => {
    db = openDatabase(join(dir.path, `${randomUUID()}.db`), MIGRATIONS);
    store = new RemindersStore(db);
    now = T0;
    wakes = 0;
    deps = { store, now: () => now, logger, onScheduleChanged: () => wakes++ };
  });
  afterEach(() => db.close());
  afterAll(() => dir.remove());

  const apply = (e: Parameters<typeof applyTaskEvent>[1]) => db.transaction(() => applyTaskEvent(deps, e))();
  const schedule = () => store.pendingFor(user).map((t) => [t.kind, t.offsetSeconds, iso(t.fireTime)]);

  it("schedules a due timer and one reminder per offset from task.created", () => {
    const t = task({ userId: user, due: T0 + 120 * MIN, offsets: [3600, 600], version: 1 });
    expect(apply(events.created(t))).toEqual({ kind: "scheduled", pending: 3 });
    expect(schedule()).toEqual([
      ["reminder", 3600, iso(T0 + 60 * MIN)],
      ["reminder", 600, iso(T0 + 110 * MIN)],
      ["due", 0, iso(T0 + 120 * MIN)],
    ]);
    expect(wakes).toBe(1);
  });

  it("schedules nothing for a task without a due time", () => {
    apply(events.created(task({ userId: user, version: 1 })));
    expect(schedule()).toEqual([]);
  });

  it("reschedules on task.updated: the pending timers are replaced by the new due time and offsets", () => {
    const t = task({ userId: user, due: T0 + 120 * MIN, offsets: [3600], version: 1 });
    apply(events.created(t));
    const moved = task({ id: t.id, userId: user, due: T0 + 300 * MIN, offsets: [600], version: 2 });
    apply(events.updated(moved));
    expect(schedule()).toEqual([
      ["reminder", 600, iso(T0 + 290 * MIN)],
      ["due", 0, iso(T0 + 300 * MIN)],
    ]);
  });

  it("drops the timers when an update removes the due time", () => {
    const t = task({ userId: user, due: T0 + 120 * MIN, offsets: [3600], version: 1 });
    apply(events.created(t));
    apply(events.updated(task({ id: t.id, userId: user, version: 2 })));
    expect(schedule()).toEqual([]);
  });

  it("ignores an update whose version is not newer than the one applied", () => {
    const t = task({ id: randomUUID(), userId: user, due: T0 + 120 * MIN, version: 1 });
    apply(events.created(t));
    apply(events.updated(task({ id: t.id, userId: user, due: T0 + 300 * MIN, version: 3 })));
    const late = apply(events.updated(task({ id: t.id, userId: user, due: T0 + 200 * MIN, version: 2 })));
    expect(late).toEqual({ kind: "stale", have: 3, got: 2 });
    const again = apply(events.updated(task({ id: t.id, userId: user, due: T0 + 200 * MIN, version: 3 })));
    expect(again.kind).toBe("stale");
    expect(schedule()).toEqual([["due", 0, iso(T0 + 300 * MIN)]]);
  });

  it("cancels every timer on task.completed, and a late older update does not bring them back", () => {
    const t = task({ userId: user, due: T0 + 120 * MIN, offsets: [600], version: 1 });
    apply(events.created(t));
    expect(apply(events.completed(task({ id: t.id, userId: user, due: T0 + 120 * MIN, version: 2 })))).toEqual({
      kind: "closed",
      dropped: 2,
    });
    expect(schedule()).toEqual([]);
    apply(events.updated(task({ id: t.id, userId: user, due: T0 + 500 * MIN, version: 1 })));
    expect(schedule()).toEqual([]);
  });

  it("schedules the timers again when a completed task is reopened (task.updated, open again)", () => {
    const t = task({ userId: user, due: T0 + 120 * MIN, offsets: [600], version: 1 });
    apply(events.created(t));
    apply(events.completed(task({ id: t.id, userId: user, due: T0 + 120 * MIN, offsets: [600], version: 2 })));
    expect(schedule()).toEqual([]);
    // What ReopenTask publishes: the whole task, open, one version on.
    const reopened = task({ id: t.id, userId: user, due: T0 + 120 * MIN, offsets: [600], version: 3 });
    expect(apply(events.updated(reopened, ["status", "complete_time"]))).toEqual({ kind: "scheduled", pending: 2 });
    expect(schedule()).toEqual([
      ["reminder", 600, iso(T0 + 110 * MIN)],
      ["due", 0, iso(T0 + 120 * MIN)],
    ]);
    // A redelivered completion from before the reopen does not cancel them.
    expect(apply(events.completed(task({ id: t.id, userId: user, due: T0 + 120 * MIN, version: 2 }))).kind).toBe(
      "stale",
    );
    expect(schedule()).toHaveLength(2);
  });

  it("does not send a reminder again that fired before the task was completed and reopened", () => {
    const t = task({ userId: user, due: T0 + 120 * MIN, offsets: [3600, 600], version: 1 });
    apply(events.created(t));
    now = T0 + 61 * MIN;
    const due = store.dueTimers(now, 10);
    expect(due.map((x) => x.offsetSeconds)).toEqual([3600]);
    expect(store.markFired(due[0]?.id ?? -1, now, randomUUID())).toBe(true);
    apply(events.completed(task({ id: t.id, userId: user, due: T0 + 120 * MIN, offsets: [3600, 600], version: 2 })));
    expect(schedule()).toEqual([]);
    apply(events.updated(task({ id: t.id, userId: user, due: T0 + 120 * MIN, offsets: [3600, 600], version: 3 })));
    // The 60-minute reminder went out already; only the ones still to come are scheduled.
    expect(schedule()).toEqual([
      ["reminder", 600, iso(T0 + 110 * MIN)],
      ["due", 0, iso(T0 + 120 * MIN)],
    ]);
  });

  it("cancels every timer on task.deleted, even when the deletion arrives before the creation", () => {
    const t = task({ userId: user, due: T0 + 120 * MIN, offsets: [600], version: 1 });
    apply(events.created(t));
    apply(events.deleted(t, 2));
    expect(schedule()).toEqual([]);

    const other = task({ userId: user, due: T0 + 120 * MIN, version: 1 });
    apply(events.deleted(other, 2));
    expect(apply(events.created(other)).kind).toBe("stale");
    expect(schedule()).toEqual([]);
  });

  it("drops a deleted user's timers and ignores task events about them that arrive later", () => {
    const other = randomUUID();
    apply(events.created(task({ userId: user, due: T0 + 120 * MIN, offsets: [600], version: 1 })));
    apply(events.created(task({ userId: other, due: T0 + 120 * MIN, version: 1 })));
    const handler = consumers(deps).userDeleted.handler;
    db.transaction(() =>
      handler(events.userDeleted(user), {
        eventId: "e",
        consumer: "c",
        subject: "s",
        deliveryCount: 1,
        traceparent: undefined,
      }),
    )();
    expect(schedule()).toEqual([]);
    expect(apply(events.created(task({ userId: user, due: T0 + 120 * MIN, version: 1 })))).toEqual({
      kind: "user-deleted",
    });
    expect(schedule()).toEqual([]);
    expect(store.pendingFor(other)).toHaveLength(1);
  });

  it("refuses an event whose task belongs to another user than its envelope says", () => {
    const e = events.created(task({ userId: user, due: T0 + 120 * MIN, version: 1 }));
    e.userId = randomUUID();
    expect(() => apply(e)).toThrow(/belongs to/);
  });

  it("ignores the project and label events tasks publishes to the same stream (no dead letter, timers untouched)", () => {
    apply(events.created(task({ userId: user, due: T0 + 120 * MIN, offsets: [600], version: 1 })));
    const before = schedule();
    const labelId = randomUUID();
    const gone = newEvent({
      userId: user,
      aggregateId: labelId,
      payload: { case: "labelDeleted", value: create(LabelDeletedSchema, { labelId }) },
    });
    const projectId = randomUUID();
    const deleted = newEvent({
      userId: user,
      aggregateId: projectId,
      payload: {
        case: "projectDeleted",
        value: create(ProjectDeletedSchema, { projectId, version: 2n }),
      },
    });
    // Sharing's member events too.
    const left = newEvent({
      userId: user,
      aggregateId: projectId,
      payload: {
        case: "projectMemberRemoved",
        value: create(ProjectMemberRemovedSchema, { projectId, userId: randomUUID(), left: true }),
      },
    });
    expect([apply(gone), apply(deleted), apply(left)]).toEqual([
      { kind: "ignored" },
      { kind: "ignored" },
      { kind: "ignored" },
    ]);
    expect(schedule()).toEqual(before);
    expect(before).toHaveLength(2);
  });
});
