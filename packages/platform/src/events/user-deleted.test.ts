import { create } from "@bufbuild/protobuf";
import { UserDeletedSchema, UserRegisteredSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { describe, expect, it } from "vitest";
import { newEvent } from "./outbox.js";
import { deletedUserId } from "./user-deleted.js";

const deleted = (payloadUser: string, envelopeUser: string) =>
  newEvent({
    userId: envelopeUser,
    aggregateId: envelopeUser || payloadUser,
    payload: { case: "userDeleted", value: create(UserDeletedSchema, { userId: payloadUser }) },
  });

describe("deletedUserId", () => {
  it("names the user of a user.deleted event, from the payload or else the envelope", () => {
    expect(deletedUserId(deleted("u1", "u1"))).toBe("u1");
    expect(deletedUserId(deleted("", "u2"))).toBe("u2");
    expect(deletedUserId(deleted("u3", ""))).toBe("u3");
  });

  it("refuses another event type, a missing user and a payload that contradicts its envelope", () => {
    const registered = newEvent({
      userId: "u1",
      aggregateId: "u1",
      payload: { case: "userRegistered", value: create(UserRegisteredSchema, { userId: "u1" }) },
    });
    expect(() => deletedUserId(registered)).toThrow(/expected a user.deleted payload, got "userRegistered"/);
    expect(() => deletedUserId(deleted("", ""))).toThrow(/has no user_id/);
    expect(() => deletedUserId(deleted("u1", "u2"))).toThrow(/names user u1 but its envelope belongs to u2/);
  });
});
