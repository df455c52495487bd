import { create } from "@bufbuild/protobuf";
import {
  type Envelope,
  UserDeletedSchema,
  UserDeletionRequestedSchema,
  UserLoggedInSchema,
  UserLoggedOutSchema,
  UserLoginFailedSchema,
  UserPreferencesUpdatedSchema,
  UserRefreshReusedSchema,
  UserRegisteredSchema,
  UserSessionRevokedSchema,
} from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { newEvent, STREAMS, type StreamSpec } from "@taskmesh/platform";
import type { ClientInfo } from "./session-store.js";

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

type AuditCase =
  | "userLoggedIn"
  | "userLoginFailed"
  | "userLoggedOut"
  | "userSessionRevoked"
  | "userRefreshReused"
  | "userPreferencesUpdated"
  | "userDeletionRequested";

/**
 * An audit event of `userId` (see the list above). `sessionId` goes to the events that concern a
 * session, `deletionId` to user.deletion_requested; the others ignore them.
 */
export function auditEvent(
  kind: AuditCase,
  userId: string,
  at: Date,
  client: ClientInfo,
  ids: { sessionId?: string; deletionId?: string } = {},
): Envelope {
  const c = { ipAddress: client.ipAddress, userAgent: client.userAgent };
  const sessionId = ids.sessionId ?? "";
  const base = { userId, aggregateId: userId, occurredAt: at };
  switch (kind) {
    case "userLoggedIn":
      return newEvent({
        ...base,
        payload: { case: kind, value: create(UserLoggedInSchema, { sessionId, client: c }) },
      });
    case "userLoginFailed":
      return newEvent({ ...base, payload: { case: kind, value: create(UserLoginFailedSchema, { client: c }) } });
    case "userLoggedOut":
      return newEvent({
        ...base,
        payload: { case: kind, value: create(UserLoggedOutSchema, { sessionId, client: c }) },
      });
    case "userSessionRevoked":
      return newEvent({
        ...base,
        payload: { case: kind, value: create(UserSessionRevokedSchema, { sessionId, client: c }) },
      });
    case "userRefreshReused":
      return newEvent({
        ...base,
        payload: { case: kind, value: create(UserRefreshReusedSchema, { sessionId, client: c }) },
      });
    case "userPreferencesUpdated":
      return newEvent({ ...base, payload: { case: kind, value: create(UserPreferencesUpdatedSchema, { client: c }) } });
    case "userDeletionRequested":
      return newEvent({
        ...base,
        payload: {
          case: kind,
          value: create(UserDeletionRequestedSchema, { deletionId: ids.deletionId ?? "", client: c }),
        },
      });
  }
}
