import { create } from "@bufbuild/protobuf";
import { type Envelope, UserDeletedSchema, UserRegisteredSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { newEvent, STREAMS, type StreamSpec } from "@taskmesh/platform";

/**
 * What the users service publishes, each event through the outbox (written in the transaction
 * that makes the change), to the USERS stream:
 * - `user.registered` (UserRegistered: id, email, time zone) when an account is created;
 * - `user.deleted` (UserDeleted: id) when the account-deletion saga deletes the account, in the
 *   transaction that deletes it (its last step). Every service holding the user's data consumes
 *   it and drops that data (choreography).
 * It consumes nothing.
 */
export const PUBLISHES: readonly StreamSpec[] = [STREAMS.USERS];

/** The event of a new account; `timeZone` is the account's at registration ("" = UTC). */
export function userRegistered(account: { id: string; email: string; timeZone: string }, at: Date): Envelope {
  return newEvent({
    userId: account.id,
    aggregateId: account.id,
    occurredAt: at,
    payload: {
      case: "userRegistered",
      value: create(UserRegisteredSchema, { userId: account.id, email: account.email, timeZone: account.timeZone }),
    },
  });
}

/** The event of a deleted account: the fact every service holding the user's data acts on. */
export function userDeleted(userId: string, at: Date): Envelope {
  return newEvent({
    userId,
    aggregateId: userId,
    occurredAt: at,
    payload: { case: "userDeleted", value: create(UserDeletedSchema, { userId }) },
  });
}
