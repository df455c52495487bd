import { create } from "@bufbuild/protobuf";
import { type Channel, type Envelope, NotificationSentSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import {
  type ConsumerDeclaration,
  type ConsumerDeclarations,
  type EventHandler,
  type Logger,
  newEvent,
  STREAMS,
  type StreamSpec,
  userDeletedConsumer,
} from "@taskmesh/platform";

/**
 * What the notifications service consumes:
 * - `reminder.due` and `task.due` (REMINDERS, published by reminders) → deliver a notification;
 * - `user.deleted` (USERS) → drop that user's inbox and delivery log (account-deletion choreography).
 */
/**
 * `due` delivers a reminder.due or task.due on the user's channels (due-events.ts; one handler for
 * both); `purgeUser` drops a user's inbox and delivery log (NotificationsStore).
 */
export function consumers<D>(deps: { due: EventHandler<D>; purgeUser: (userId: string) => number; logger: Logger }) {
  const reminderDue: ConsumerDeclaration<D> = {
    stream: STREAMS.REMINDERS,
    consumer: { durable: "notifications-reminder-due", filterSubject: "taskmesh.reminder.due" },
    handler: deps.due,
  };
  const taskDue: ConsumerDeclaration<D> = {
    stream: STREAMS.REMINDERS,
    consumer: { durable: "notifications-task-due", filterSubject: "taskmesh.task.due" },
    handler: deps.due,
  };
  return {
    reminderDue,
    taskDue,
    userDeleted: userDeletedConsumer("notifications", deps.purgeUser, deps.logger),
  } satisfies ConsumerDeclarations;
}

/** What it publishes, through its outbox: `notification.sent`, one per channel delivered, to NOTIFICATIONS. */
export const PUBLISHES: readonly StreamSpec[] = [STREAMS.NOTIFICATIONS];

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
