import { create } from "@bufbuild/protobuf";
import { type Channel, type Envelope, NotificationSentSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { type ConsumerSpec, newEvent, STREAMS, type StreamSpec } from "@taskmesh/platform";

/**
 * What the notifications service consumes:
 * - `reminder.due` and `task.due` (REMINDERS, published by reminders) → deliver a notification;
 * - `user.deleted` (USERS) → drop that user's inbox and delivery log (account-deletion choreography).
 */
export const CONSUMERS = {
  reminderDue: {
    stream: STREAMS.REMINDERS,
    consumer: { durable: "notifications-reminder-due", filterSubject: "taskmesh.reminder.due" },
  },
  taskDue: {
    stream: STREAMS.REMINDERS,
    consumer: { durable: "notifications-task-due", filterSubject: "taskmesh.task.due" },
  },
  userDeleted: {
    stream: STREAMS.USERS,
    consumer: { durable: "notifications-user-deleted", filterSubject: "taskmesh.user.deleted" },
  },
} as const satisfies Record<string, { stream: StreamSpec; consumer: Omit<ConsumerSpec, "stream"> }>;

/** What it publishes, through its outbox: `notification.sent`, one per channel delivered, to NOTIFICATIONS. */
export const NOTIFICATIONS_STREAMS = [STREAMS.NOTIFICATIONS] as const;

export function notificationSent(e: {
  userId: string;
  notificationId: string;
  taskId: string;
  channel: Channel;
  sourceEventId: string;
  at: Date;
}): Envelope {
  return newEvent({
    userId: e.userId,
    aggregateId: e.notificationId,
    occurredAt: e.at,
    payload: {
      case: "notificationSent",
      value: create(NotificationSentSchema, {
        notificationId: e.notificationId,
        taskId: e.taskId,
        channel: e.channel,
        sourceEventId: e.sourceEventId,
      }),
    },
  });
}
