import type { Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import type { Logger } from "../log/logger.js";
import type { EventContext } from "./consumer.js";
import type { ConsumerDeclaration } from "./service-events.js";
import { STREAMS } from "./streams.js";

/**
 * The user a `user.deleted` event names, for the consumers that drop that user's data (the
 * choreography half of account deletion). Anything else is a bug upstream, not something to skip
 * quietly: a payload of another type, no user id, or a payload naming a different user than its
 * envelope throws, and the consumer dead-letters the event with that reason.
 */
export function deletedUserId(event: Envelope): string {
  if (event.payload.case !== "userDeleted") {
    throw new Error(`expected a user.deleted payload, got "${event.payload.case ?? "none"}" (type "${event.type}")`);
  }
  const userId = event.payload.value.userId || event.userId;
  if (!userId) throw new Error("user.deleted has no user_id");
  if (event.userId && event.userId !== userId) {
    throw new Error(`user.deleted names user ${userId} but its envelope belongs to ${event.userId}`);
  }
  return userId;
}

/**
 * The one shape of a `user.deleted` consumer (the choreography half of account deletion): a
 * durable `<service>-user-deleted` on USERS filtered to user.deleted, whose handler drops the
 * user's rows with `purge` inside the inbox transaction (so it applies once per event id) and
 * logs how many went. A malformed event throws in deletedUserId and is dead-lettered.
 */
export function userDeletedConsumer(
  service: string,
  purge: (userId: string) => number,
  logger: Logger,
): ConsumerDeclaration & { handler: (event: Envelope, ctx: EventContext) => void } {
  return {
    stream: STREAMS.USERS,
    consumer: { durable: `${service}-user-deleted`, filterSubject: "taskmesh.user.deleted" },
    handler: (event, ctx) => {
      const userId = deletedUserId(event);
      const rows = purge(userId);
      logger.info({ userId, rows, eventId: ctx.eventId }, "user deleted: this service's rows of the user dropped");
    },
  };
}
