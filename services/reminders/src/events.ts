import type { ConsumerSpec, StreamSpec } from "@taskmesh/platform";
import { STREAMS } from "@taskmesh/platform";

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

export const CONSUMERS = {
  tasks: {
    stream: STREAMS.TASKS,
    consumer: { durable: "reminders-tasks" },
  },
  userDeleted: {
    stream: STREAMS.USERS,
    consumer: { durable: "reminders-user-deleted", filterSubject: "taskmesh.user.deleted" },
  },
} as const satisfies Record<string, { stream: StreamSpec; consumer: Omit<ConsumerSpec, "stream"> }>;
