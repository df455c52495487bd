import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";

/** What the reminders service keeps of a task: enough to derive its timers and fill the events they fire. */
export interface TaskSnapshot {
  taskId: string;
  userId: string;
  title: string;
  /** IANA zone of the due time ("" when the task has none); passed on for the notification's wording. */
  timeZone: string;
  /** Epoch ms, or undefined when the task has no due time. */
  dueTime: number | undefined;
  /** Reminder offsets before the due time, in whole seconds. */
  offsetsSeconds: number[];
  /** Only open tasks have timers. */
  open: boolean;
  version: number;
}

export type TimerKind = "reminder" | "due";

/** A timer to schedule: `due` fires task.due, `reminder` fires reminder.due. */
export interface PlannedTimer {
  kind: TimerKind;
  /** Epoch ms. */
  fireTime: number;
  /** Seconds before the due time (0 for the due timer). */
  offsetSeconds: number;
}

/** The parts of a task event's Task that timers depend on. */
export function snapshotOf(task: Task): TaskSnapshot {
  return {
    taskId: task.id,
    userId: task.userId,
    title: task.title,
    timeZone: task.timeZone,
    dueTime: task.dueTime ? timestampMs(task.dueTime) : undefined,
    // tasks stores whole seconds (task-rules.ts); nanos, if a producer ever sent them, are dropped.
    offsetsSeconds: task.reminderOffsets.map((d) => Number(d.seconds)),
    open: task.status === TaskStatus.OPEN,
    version: Number(task.version),
  };
}

/**
 * How long after its due time a task that this service learns about (or sees moved into the
 * past) still gets its task.due, fired at once. Default 24 h.
 */
export const OVERDUE_GRACE_MS = 24 * 60 * 60 * 1000;

/**
 * The timers of a task as seen at `now` (epoch ms): for an open task with a due time, one `due`
 * timer at the due time and one `reminder` per distinct offset at due − offset. Nothing for a
 * task that is completed or has no due time.
 *
 * Timers already in the past when they are scheduled (the event arrived late: the task was
 * created or moved close to, or past, its due time, or this service was behind):
 * - a reminder whose fire time has passed while the due time has not is kept: the scheduler fires
 *   it at once (the user still gets the heads-up, late);
 * - a reminder of a task whose due time has passed is dropped: "due in 1 hour" about something
 *   already overdue says nothing the task.due does not say better;
 * - the due timer of a task overdue by less than `overdueGraceMs` is kept and so fires task.due
 *   at once: the task is open and overdue and the user has not been told (this also covers events
 *   held up by a NATS outage). One overdue by more is history (a task entered after the fact, or
 *   the TASKS stream replayed into a fresh database) and gets no timer, rather than a burst of
 *   stale notifications.
 * A timer that already fired is not fired again when the task is edited: the store keeps fired
 * timers (RemindersStore.schedule). Timers scheduled while in the future and missed while the
 * service was down are not affected by any of this: they fire at start-up however late.
 */
export function deriveTimers(task: TaskSnapshot, now: number, overdueGraceMs = OVERDUE_GRACE_MS): PlannedTimer[] {
  if (!task.open || task.dueTime === undefined) return [];
  const due = task.dueTime;
  const timers: PlannedTimer[] = [];
  if (due > now) {
    for (const offset of [...new Set(task.offsetsSeconds)].sort((a, b) => b - a)) {
      if (!Number.isFinite(offset) || offset < 0) continue;
      timers.push({ kind: "reminder", fireTime: due - offset * 1000, offsetSeconds: offset });
    }
  }
  if (due > now - overdueGraceMs) timers.push({ kind: "due", fireTime: due, offsetSeconds: 0 });
  return timers;
}
