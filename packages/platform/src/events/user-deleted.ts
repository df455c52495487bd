import type { Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";

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
