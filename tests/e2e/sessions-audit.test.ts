import { Code } from "@connectrpc/connect";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { waitFor } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Api, connectJsonApi, type E2E, fails, type JsonObject, ok, signUp, startE2E } from "./harness.js";

let e2e: E2E;
let api: Api;
beforeAll(async () => {
  e2e = await startE2E();
  api = connectJsonApi(e2e.system.endpoints.gateway);
});
afterAll(async () => {
  await e2e?.stop();
});

/** Login over Connect JSON with a browser-like User-Agent, as a person's device would. */
async function loginAs(email: string, password: string, userAgent: string): Promise<JsonObject> {
  const res = await fetch(`${e2e.system.endpoints.gateway}/${UserService.typeName}/Login`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1", "user-agent": userAgent },
    body: JSON.stringify({ email, password }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as JsonObject;
}

async function audit(token: string): Promise<JsonObject[]> {
  const page = ok(await api.call(AnalyticsService.method.listAuditEvents, { pageSize: 100 }, token));
  return (page.events as JsonObject[] | undefined) ?? [];
}

describe("sessions and the audit log through the gateway (real NATS, every service a process)", () => {
  it("refreshes with rotation, detects reuse, and audits login, failed login, reuse and task deletion with the client's address and agent", async () => {
    const me = await signUp(api);
    fails(
      await api.call(UserService.method.login, { email: me.email, password: "not-my-password" }),
      Code.Unauthenticated,
    );
    const login = await loginAs(me.email, me.password, "E2E-Browser/1.0");

    // RefreshSession needs no access token at the gateway, and rotates.
    const refreshed = ok(
      await api.call(UserService.method.refreshSession, { refreshToken: login.refreshToken as string }),
    );
    expect(refreshed.sessionId).toBe(login.sessionId);
    expect(refreshed.refreshToken).not.toBe(login.refreshToken);
    fails(
      await api.call(UserService.method.refreshSession, { refreshToken: login.refreshToken as string }),
      Code.Unauthenticated,
      /already used/,
    );
    fails(
      await api.call(UserService.method.refreshSession, { refreshToken: refreshed.refreshToken as string }),
      Code.Unauthenticated,
    );

    const task = ok(await api.call(TaskService.method.createTask, { task: { title: "to be deleted" } }, me.token))
      .task as JsonObject;
    ok(await api.call(TaskService.method.deleteTask, { taskId: task.id as string }, me.token));

    const events = await waitFor("the audit entries", async () => {
      const list = await audit(me.token);
      const actions = new Set(list.map((e) => e.action));
      const wanted = [
        "AUDIT_ACTION_LOGIN",
        "AUDIT_ACTION_LOGIN_FAILED",
        "AUDIT_ACTION_REFRESH_TOKEN_REUSED",
        "AUDIT_ACTION_TASK_DELETED",
      ];
      return wanted.every((w) => actions.has(w)) ? list : undefined;
    });
    const browserLogin = events.find((e) => e.action === "AUDIT_ACTION_LOGIN" && e.sessionId === login.sessionId);
    expect(browserLogin).toMatchObject({ userAgent: "E2E-Browser/1.0", ipAddress: "127.0.0.1" });
    expect(events.find((e) => e.action === "AUDIT_ACTION_TASK_DELETED")?.resourceId).toBe(task.id);
    expect(events.find((e) => e.action === "AUDIT_ACTION_LOGIN_FAILED")?.ipAddress).toBe("127.0.0.1");
    // Newest first.
    const times = events.map((e) => Date.parse(e.occurTime as string));
    expect([...times].sort((x, y) => y - x)).toEqual(times);
  });

  it("lists and revokes sessions at the gateway; the account's deletion purges its audit log", async () => {
    const me = await signUp(api);
    const other = await loginAs(me.email, me.password, "Other-Device/2.0");
    const sessions = ok(await api.call(UserService.method.listSessions, {}, me.token)).sessions as JsonObject[];
    expect(sessions.map((s) => s.userAgent)).toContain("Other-Device/2.0");
    expect(sessions.filter((s) => s.current).length).toBe(1);
    ok(await api.call(UserService.method.revokeSession, { sessionId: other.sessionId as string }, me.token));
    fails(
      await api.call(UserService.method.refreshSession, { refreshToken: other.refreshToken as string }),
      Code.Unauthenticated,
      /revoked/,
    );
    await waitFor("the revocation in the audit log", async () =>
      (await audit(me.token)).some((e) => e.action === "AUDIT_ACTION_SESSION_REVOKED"),
    );

    // Logout ends the current session: its refresh token is refused from then on.
    const third = await loginAs(me.email, me.password, "Third/3.0");
    ok(await api.call(UserService.method.logout, {}, third.accessToken as string));
    fails(
      await api.call(UserService.method.refreshSession, { refreshToken: third.refreshToken as string }),
      Code.Unauthenticated,
      /signed out/,
    );

    const deletion = ok(await api.call(UserService.method.deleteAccount, { password: me.password }, me.token))
      .deletion as JsonObject;
    await waitFor(
      "the account deletion to complete",
      async () => {
        const d = ok(
          await api.call(UserService.method.getAccountDeletion, { deletionId: deletion.id as string }, me.token),
        );
        return (d.deletion as JsonObject).state === "DELETION_STATE_COMPLETED";
      },
      { timeoutMs: 20_000 },
    );
    // The access token still verifies (it is not expired), so the read is allowed: it finds nothing.
    await waitFor("the audit log to be purged", async () => (await audit(me.token)).length === 0);
  });
});
