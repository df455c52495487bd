import { describe, expect, it } from "vitest";
import { deriveTimers, type TaskSnapshot } from "./timers.js";

const DUE = Date.parse("2030-03-10T14:00:00Z");
const H = 3600;

function task(over: Partial<TaskSnapshot> = {}): TaskSnapshot {
  return {
    taskId: "t1",
    userId: "u1",
    title: "Pay rent",
    timeZone: "Europe/Paris",
    dueTime: DUE,
    offsetsSeconds: [],
    open: true,
    version: 1,
    ...over,
  };
}

const iso = (ms: number) => new Date(ms).toISOString();

describe("deriveTimers", () => {
  it("gives an open task with a due time one due timer at the due time", () => {
    expect(deriveTimers(task(), DUE - 24 * H * 1000)).toEqual([{ kind: "due", fireTime: DUE, offsetSeconds: 0 }]);
  });

  it("adds one reminder per offset at due minus offset, earliest first", () => {
    const timers = deriveTimers(task({ offsetsSeconds: [600, 24 * H, 0] }), DUE - 48 * H * 1000);
    expect(timers.map((t) => [t.kind, iso(t.fireTime), t.offsetSeconds])).toEqual([
      ["reminder", "2030-03-09T14:00:00.000Z", 24 * H],
      ["reminder", "2030-03-10T13:50:00.000Z", 600],
      ["reminder", "2030-03-10T14:00:00.000Z", 0],
      ["due", "2030-03-10T14:00:00.000Z", 0],
    ]);
  });

  it("schedules a repeated offset once", () => {
    const timers = deriveTimers(task({ offsetsSeconds: [600, 600] }), DUE - 48 * H * 1000);
    expect(timers.filter((t) => t.kind === "reminder")).toHaveLength(1);
  });

  it("has no timers for a task without a due time", () => {
    expect(deriveTimers(task({ dueTime: undefined, offsetsSeconds: [600] }), 0)).toEqual([]);
  });

  it("has no timers for a task that is not open", () => {
    expect(deriveTimers(task({ open: false, offsetsSeconds: [600] }), DUE - 48 * H * 1000)).toEqual([]);
  });

  it("keeps a reminder whose fire time has passed while the due time has not, so it fires at once", () => {
    const now = DUE - 30 * 60 * 1000; // 30 min before the due time; the 1 h reminder is late
    const timers = deriveTimers(task({ offsetsSeconds: [H, 600] }), now);
    expect(timers.map((t) => [t.kind, t.offsetSeconds, t.fireTime <= now])).toEqual([
      ["reminder", H, true],
      ["reminder", 600, false],
      ["due", 0, false],
    ]);
  });

  it("drops the reminders of a task already overdue and keeps its due timer, which fires at once", () => {
    const now = DUE + 5 * 60 * 1000;
    expect(deriveTimers(task({ offsetsSeconds: [H, 600] }), now)).toEqual([
      { kind: "due", fireTime: DUE, offsetSeconds: 0 },
    ]);
  });

  it("gives a task overdue by more than the grace period no timer at all", () => {
    expect(deriveTimers(task({ offsetsSeconds: [H] }), DUE + 25 * H * 1000)).toEqual([]);
    expect(deriveTimers(task(), DUE + 2 * H * 1000, H * 1000)).toEqual([]);
    expect(deriveTimers(task(), DUE + 23 * H * 1000)).toHaveLength(1);
  });
});
