import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AuditAction } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, describe, expect, it } from "vitest";
import { AnalyticsStore, MIGRATIONS } from "./analytics-store.js";
import { foldEvent } from "./events.js";

const client = { ipAddress: "203.0.113.9", userAgent: "Firefox/140" };
let n = 0;

function event(userId: string, at: number, payload: Envelope["payload"], id = `e-${++n}`): Envelope {
  return create(EnvelopeSchema, {
    id,
    type: "x",
    userId,
    aggregateId: userId,
    occurredAt: timestampFromMs(at),
    payload,
  });
}

describe("audit log (analytics read model, real SQLite)", () => {
  const dir = tempDir("analytics-audit-");
  afterAll(() => dir.remove());

  it("migrates a database of the previous schema (3) to the audit log (10), keeping its rows", () => {
    const path = join(dir.path, "migrate.db");
    const old = openDatabase(
      path,
      MIGRATIONS.filter((m) => m.version <= 3),
    );
    old.prepare("INSERT INTO users (user_id, time_zone, as_of_ms) VALUES ('u1', 'UTC', 5)").run();
    old.close();
    const db = openDatabase(path, MIGRATIONS);
    try {
      const store = new AnalyticsStore(db);
      expect(store.stats("u1", 10).asOfMs).toBe(5);
      foldEvent(
        store,
        event("u1", 7, {
          case: "userLoginFailed",
          value: {
            $typeName: "taskmesh.events.v1.UserLoginFailed",
            client: { $typeName: "taskmesh.events.v1.ClientInfo", ...client },
          },
        }),
      );
      expect(store.auditPage("u1", 10, undefined).entries.map((e) => e.action)).toEqual([AuditAction.LOGIN_FAILED]);
    } finally {
      db.close();
    }
  });

  it("records the user's security and data events newest first, with client details, paged; a redelivery adds nothing", () => {
    const db = openDatabase(join(dir.path, "fold.db"), MIGRATIONS);
    try {
      const store = new AnalyticsStore(db);
      const c = { $typeName: "taskmesh.events.v1.ClientInfo" as const, ...client };
      const login = event("u2", 1000, {
        case: "userLoggedIn",
        value: { $typeName: "taskmesh.events.v1.UserLoggedIn", sessionId: "s1", client: c },
      });
      foldEvent(store, login);
      foldEvent(store, login); // redelivered
      foldEvent(
        store,
        event("u2", 2000, {
          case: "taskDeleted",
          value: { $typeName: "taskmesh.events.v1.TaskDeleted", taskId: "t9", version: 3n },
        }),
      );
      foldEvent(
        store,
        event("u2", 3000, {
          case: "userLoggedOut",
          value: { $typeName: "taskmesh.events.v1.UserLoggedOut", sessionId: "s1", client: c },
        }),
      );
      foldEvent(
        store,
        event("other", 2500, {
          case: "userPreferencesUpdated",
          value: { $typeName: "taskmesh.events.v1.UserPreferencesUpdated", client: c },
        }),
      );

      const first = store.auditPage("u2", 2, undefined);
      expect(first.entries.map((e) => [e.action, e.occurredMs])).toEqual([
        [AuditAction.LOGOUT, 3000],
        [AuditAction.TASK_DELETED, 2000],
      ]);
      expect(first.entries[1]?.resourceId).toBe("t9");
      expect(first.next).toBeDefined();
      const second = store.auditPage("u2", 2, first.next);
      expect(second.entries.map((e) => [e.action, e.sessionId, e.ipAddress, e.userAgent])).toEqual([
        [AuditAction.LOGIN, "s1", client.ipAddress, client.userAgent],
      ]);
      expect(second.next).toBeUndefined();
    } finally {
      db.close();
    }
  });

  it("cannot be edited, is purged by user.deleted, and a late event of a deleted user is not recorded", () => {
    const db = openDatabase(join(dir.path, "purge.db"), MIGRATIONS);
    try {
      const store = new AnalyticsStore(db);
      foldEvent(
        store,
        event("u3", 1000, { case: "userLoginFailed", value: { $typeName: "taskmesh.events.v1.UserLoginFailed" } }),
      );
      expect(() => db.prepare("UPDATE audit_events SET action = 1").run()).toThrow(/append-only/);
      foldEvent(
        store,
        event("u3", 2000, {
          case: "userDeleted",
          value: { $typeName: "taskmesh.events.v1.UserDeleted", userId: "u3" },
        }),
      );
      expect(store.auditPage("u3", 10, undefined).entries).toEqual([]);
      foldEvent(
        store,
        event("u3", 3000, {
          case: "taskDeleted",
          value: { $typeName: "taskmesh.events.v1.TaskDeleted", taskId: "t1", version: 1n },
        }),
      );
      expect(db.prepare("SELECT count(*) FROM audit_events WHERE user_id = 'u3'").pluck().get()).toBe(0);
    } finally {
      db.close();
    }
  });

  it("records sharing in the owner's log: a member joined, a role changed, a member left, naming the project", () => {
    const db = openDatabase(join(dir.path, "sharing.db"), MIGRATIONS);
    try {
      const store = new AnalyticsStore(db);
      const member = {
        $typeName: "taskmesh.tasks.v1.ProjectMember" as const,
        projectId: "p1",
        userId: "u9",
        email: "u9@example.com",
        role: 2,
      };
      const shared = (at: number, payload: Envelope["payload"]) => ({
        ...event("owner", at, payload),
        aggregateId: "p1",
      });
      foldEvent(
        store,
        shared(1000, {
          case: "projectMemberAdded",
          value: { $typeName: "taskmesh.events.v1.ProjectMemberAdded", member },
        }),
      );
      foldEvent(
        store,
        shared(2000, {
          case: "projectMemberUpdated",
          value: { $typeName: "taskmesh.events.v1.ProjectMemberUpdated", member: { ...member, role: 1 } },
        }),
      );
      foldEvent(
        store,
        shared(3000, {
          case: "projectMemberRemoved",
          value: { $typeName: "taskmesh.events.v1.ProjectMemberRemoved", projectId: "p1", userId: "u9", left: true },
        }),
      );
      const entries = store.auditPage("owner", 10, undefined).entries;
      expect(entries.map((e) => [e.action, e.resourceId])).toEqual([
        [AuditAction.PROJECT_UNSHARED, "p1"],
        [AuditAction.PROJECT_MEMBER_ROLE_CHANGED, "p1"],
        [AuditAction.PROJECT_SHARED, "p1"],
      ]);
      expect(store.auditPage("u9", 10, undefined).entries).toEqual([]);
    } finally {
      db.close();
    }
  });
});
