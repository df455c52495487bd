import type { Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { activeTraceparent, type EventContext, type Logger } from "@taskmesh/platform";
import type { RemindersStore } from "./reminders-store.js";
import { deriveTimers, snapshotOf } from "./timers.js";

export interface TaskEventsDeps {
  store: RemindersStore;
  /** The service's clock, epoch ms. */
  now: () => number;
  logger: Logger;
  /** Called after a task's timers changed (the scheduler re-arms once the transaction has committed). */
  onScheduleChanged: () => void;
}

export type TaskEventOutcome =
  | { kind: "scheduled"; pending: number }
  | { kind: "closed"; dropped: number }
  | { kind: "stale"; have: number; got: number }
  | { kind: "user-deleted" }
  | { kind: "ignored" };

/**
 * Applies one event of the TASKS stream to the timers (synchronous: it runs inside the
 * consumer's inbox transaction, so the timers change exactly when the event id is recorded).
 *
 * - task.created / task.updated: the task's pending timers are replaced by the ones derived from
 *   the task in the event (see deriveTimers): rescheduled when its due time or offsets changed,
 *   none when it has no due time or is not open.
 * - task.completed / task.deleted: all its timers are dropped.
 * - An event whose version is not newer than the one already applied for that task is ignored
 *   (an older update delivered late must not undo a newer one, nor revive a deleted task).
 * - Events about a user whose account was deleted are ignored.
 *
 * The timers keep the active trace context (the consumer's span of this event, which continues
 * the trace of the request that changed the task), so they fire in that trace (see Scheduler).
 *
 * Anything malformed throws, and the consumer dead-letters the event with the reason.
 */
export function applyTaskEvent(deps: TaskEventsDeps, event: Envelope): TaskEventOutcome {
  const { store } = deps;
  const p = event.payload;
  let taskId: string;
  let userId: string;
  let version: number;
  switch (p.case) {
    case "taskCreated":
    case "taskUpdated":
    case "taskCompleted": {
      const task = p.value.task;
      if (!task?.id) throw new Error(`${event.type} carries no task`);
      taskId = task.id;
      userId = task.userId || event.userId;
      version = Number(task.version);
      break;
    }
    case "taskDeleted":
      if (!p.value.taskId) throw new Error("task.deleted has no task_id");
      taskId = p.value.taskId;
      userId = event.userId;
      version = Number(p.value.version);
      break;
    // Projects, their members and labels (tasks publishes them to TASKS too) change no timer: a project's
    // deletion arrives as a task.deleted per task first.
    case "projectCreated":
    case "projectUpdated":
    case "projectDeleted":
    case "projectMemberAdded":
    case "projectMemberUpdated":
    case "projectMemberRemoved":
    case "labelCreated":
    case "labelUpdated":
    case "labelDeleted":
      return { kind: "ignored" };
    default:
      throw new Error(`unexpected payload "${p.case ?? "none"}" (type "${event.type}") on the TASKS stream`);
  }
  if (!userId) throw new Error(`${event.type} of task ${taskId} names no user`);
  if (event.userId && event.userId !== userId) {
    throw new Error(`${event.type} of task ${taskId} belongs to ${userId} but its envelope to ${event.userId}`);
  }

  if (store.isUserDeleted(userId)) return { kind: "user-deleted" };
  const known = store.known(taskId);
  if (known && known.userId !== userId) {
    throw new Error(`${event.type} of task ${taskId} names user ${userId}, but the task belongs to ${known.userId}`);
  }
  if (known && known.version >= version) return { kind: "stale", have: known.version, got: version };

  let outcome: TaskEventOutcome;
  if (p.case === "taskCreated" || p.case === "taskUpdated") {
    // Guarded above: the task is there.
    const snapshot = { ...snapshotOf(p.value.task as NonNullable<typeof p.value.task>), userId, version };
    const timers = deriveTimers(snapshot, deps.now());
    outcome = { kind: "scheduled", pending: store.schedule(snapshot, timers, activeTraceparent()) };
  } else {
    const state = p.case === "taskCompleted" ? "completed" : "deleted";
    outcome = { kind: "closed", dropped: store.close(taskId, userId, version, state) };
  }
  deps.onScheduleChanged();
  return outcome;
}

/** The consumer handler for TASKS (EventConsumer's synchronous `apply`). */
export function taskEventsHandler(deps: TaskEventsDeps): (event: Envelope, ctx: EventContext) => void {
  return (event, ctx) => {
    const outcome = applyTaskEvent(deps, event);
    deps.logger.debug({ eventId: ctx.eventId, type: event.type, taskId: event.aggregateId, ...outcome }, "task event");
  };
}
