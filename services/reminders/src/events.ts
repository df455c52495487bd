import { type ConsumerDeclarations, STREAMS, type StreamSpec, userDeletedConsumer } from "@taskmesh/platform";
import { type TaskEventsDeps, taskEventsHandler } from "./task-events.js";

/**
 * What the reminders service publishes and consumes.
 *
 * Publishes to the REMINDERS stream, through its outbox in the transaction that marks a timer fired:
 * - `reminder.due` (ReminderDue: task, title, due time, offset, fire time, zone), one per reminder offset;
 * - `task.due` (TaskDue: task, title, due time, zone), one per due time.
 *
 * Consumes:
 * - the whole TASKS stream with ONE durable consumer (`reminders-tasks`, no filter: the stream
 *   holds exactly task.created/updated/completed/deleted). One consumer keeps a task's events in
 *   the order tasks committed them; versions (task.version, and task_deleted.version) still
 *   guard against an older event applied after a newer one.
 * - `user.deleted` from USERS (durable `reminders-user-deleted`): the user's timers are dropped.
 */
export const PUBLISHES: readonly StreamSpec[] = [STREAMS.REMINDERS];

export function consumers(deps: TaskEventsDeps) {
  return {
    tasks: { stream: STREAMS.TASKS, consumer: { durable: "reminders-tasks" }, handler: taskEventsHandler(deps) },
    // Later task events about the user are ignored (applyTaskEvent checks the deleted-user list).
    userDeleted: userDeletedConsumer(
      "reminders",
      (userId) => {
        const timers = deps.store.purgeUser(userId, new Date(deps.now()));
        deps.onScheduleChanged();
        return timers;
      },
      deps.logger,
    ),
  } satisfies ConsumerDeclarations;
}
