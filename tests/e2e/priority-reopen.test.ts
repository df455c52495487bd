import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { ProjectChangeKind, TaskService, type WatchProjectResponse } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { waitFor } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Api,
  connectJsonApi,
  type E2E,
  fails,
  grpcApi,
  type JsonObject,
  ok,
  signUp,
  startE2E,
} from "./harness.js";

let e2e: E2E;
beforeAll(async () => {
  e2e = await startE2E();
});
afterAll(async () => {
  await e2e?.stop();
});

const apis: Array<[string, () => Api]> = [
  ["gRPC over h2c", () => grpcApi(e2e.system.endpoints.gateway)],
  ["Connect JSON over HTTP/1.1", () => connectJsonApi(e2e.system.endpoints.gateway)],
];

describe.each(apis)("priority and reopen through the gateway with %s", (_, makeApi) => {
  let api: Api;
  beforeAll(() => {
    api = makeApi();
  });

  it("creates a P1 task, filters by priority, completes and reopens it, and analytics counts it open again", async () => {
    const me = await signUp(api);
    const urgent = ok(
      await api.call(
        TaskService.method.createTask,
        { task: { title: "Renew visa", priority: "PRIORITY_P1" } },
        me.token,
      ),
    ).task as JsonObject;
    const plain = ok(await api.call(TaskService.method.createTask, { task: { title: "Sort photos" } }, me.token))
      .task as JsonObject;
    expect(urgent.priority).toBe("PRIORITY_P1");
    expect(plain.priority).toBe("PRIORITY_P4");
    const id = urgent.id as string;

    const p1 = ok(await api.call(TaskService.method.listTasks, { priority: "PRIORITY_P1" }, me.token));
    expect((p1.tasks as JsonObject[]).map((t) => t.id)).toEqual([id]);
    const raised = ok(
      await api.call(TaskService.method.updateTask, { taskId: plain.id as string, priority: "PRIORITY_P2" }, me.token),
    ).task as JsonObject;
    expect(raised.priority).toBe("PRIORITY_P2");

    ok(await api.call(TaskService.method.completeTask, { taskId: id }, me.token));
    const reopened = ok(await api.call(TaskService.method.reopenTask, { taskId: id }, me.token)).task as JsonObject;
    expect(reopened).toMatchObject({ id, status: "TASK_STATUS_OPEN", priority: "PRIORITY_P1" });
    expect(reopened.completeTime).toBeUndefined();

    // Another user cannot reopen it, nor learn it exists; a missing id is the same NOT_FOUND.
    const other = await signUp(api);
    fails(await api.call(TaskService.method.reopenTask, { taskId: id }, other.token), Code.NotFound);
    fails(await api.call(TaskService.method.reopenTask, { taskId: randomUUID() }, me.token), Code.NotFound);
    fails(await api.call(TaskService.method.reopenTask, { taskId: "nope" }, me.token), Code.InvalidArgument, /task_id/);

    // The task.updated of the reopen reaches analytics over NATS: both tasks open, none completed.
    const stats = await waitFor("analytics to fold the reopen", async () => {
      const s = ok(await api.call(AnalyticsService.method.getStats, {}, me.token)).stats as JsonObject | undefined;
      return s && Number(s.openCount ?? 0) === 2 && Number(s.completedCount ?? 0) === 0 ? s : undefined;
    });
    expect(Number(stats.createdCount)).toBe(2);
  }, 30_000);
});

// Projects, labels and subtasks (issue 14's second slice) share this file's stack: one system start
// per file is most of an e2e file's time.
describe.each(apis)("projects, labels and subtasks through the gateway with %s", (_, makeApi) => {
  let api: Api;
  beforeAll(() => {
    api = makeApi();
  });

  it("organises tasks in projects with labels and subtasks, in manual order, and analytics counts them per project and label", async () => {
    const me = await signUp(api);
    const m = TaskService.method;
    const call = async (method: Parameters<Api["call"]>[0], req: JsonObject, token = me.token) =>
      ok(await api.call(method, req, token));

    const project = (await call(m.createProject, { name: "Moving house" })).project as JsonObject;
    const label = (await call(m.createLabel, { name: "errand" })).label as JsonObject;
    const projectId = project.id as string;
    const labelId = label.id as string;
    const later = (await call(m.createProject, { name: "Later" })).project as JsonObject;
    await call(m.moveProject, { projectId: later.id as string, beforeProjectId: projectId });
    const projects = (await call(m.listProjects, {})).projects as JsonObject[];
    expect(projects.map((p) => p.name)).toEqual(["Inbox", "Later", "Moving house"]);
    await call(m.updateLabel, { labelId, name: "errands" });
    expect(((await call(m.listLabels, {})).labels as JsonObject[]).map((l) => l.name)).toEqual(["errands"]);

    const boxes = (await call(m.createTask, { task: { title: "Buy boxes", projectId, labelIds: [labelId] } }))
      .task as JsonObject;
    const movers = (await call(m.createTask, { task: { title: "Book movers", projectId } })).task as JsonObject;
    const boxesId = boxes.id as string;
    const tape = (await call(m.createTask, { task: { title: "Tape", parentId: boxesId } })).task as JsonObject;
    expect(tape).toMatchObject({ parentId: boxesId, projectId });
    await call(m.moveTask, { taskId: movers.id as string, beforeTaskId: boxesId });
    const manual = (await call(m.listTasks, { projectId, order: "TASK_ORDER_MANUAL" })).tasks as JsonObject[];
    expect(manual.filter((t) => !t.parentId).map((t) => t.title)).toEqual(["Book movers", "Buy boxes"]);
    const labelled = (await call(m.listTasks, { labelId })).tasks as JsonObject[];
    expect(labelled.map((t) => t.id)).toEqual([boxes.id]);

    // The parent waits for its open subtask unless the caller asks to complete both.
    fails(
      await api.call(m.completeTask, { taskId: boxes.id as string }, me.token),
      Code.FailedPrecondition,
      /1 open subtask/,
    );
    await call(m.completeTask, { taskId: boxesId, completeChildren: true });

    // Another user's project, label and task ids are NOT_FOUND.
    const other = await signUp(api);
    fails(await api.call(m.updateProject, { projectId, name: "mine" }, other.token), Code.NotFound);
    fails(await api.call(m.deleteLabel, { labelId }, other.token), Code.NotFound);
    fails(
      await api.call(m.createTask, { task: { title: "x", parentId: boxes.id as string } }, other.token),
      Code.NotFound,
    );
    fails(await api.call(m.listTasks, { projectId: randomUUID() }, me.token), Code.NotFound);

    const stats = await waitFor("analytics to count per project and label", async () => {
      const s = ok(await api.call(AnalyticsService.method.getStats, {}, me.token)).stats as JsonObject | undefined;
      const perProject = (s?.projectCounts as JsonObject[] | undefined)?.find((p) => p.projectId === projectId);
      return perProject && Number(perProject.completedCount ?? 0) === 2 ? s : undefined;
    });
    expect(stats.labelCounts).toEqual([{ labelId, completedCount: "1" }]);
    const hits = ok(await api.call(AnalyticsService.method.searchTasks, { query: "tape", projectId }, me.token))
      .hits as JsonObject[];
    expect(hits.map((h) => h.taskId)).toEqual([tape.id]);

    // Deleting the project deletes its three tasks; the Inbox stays and cannot be deleted.
    expect((await call(m.deleteProject, { projectId })).deletedTaskCount).toBe("3");
    const inboxId = (projects[0] as JsonObject).id as string;
    fails(await api.call(m.deleteProject, { projectId: inboxId }, me.token), Code.FailedPrecondition);
  }, 30_000);
});

// Sharing (issue 14) on the same stack: invitation by email, roles, the owner's audit log.
describe.each(apis)("shared projects through the gateway with %s", (_, makeApi) => {
  let api: Api;
  beforeAll(() => {
    api = makeApi();
  });

  it("shares a project by email: the invitee accepts, edits as an editor, a viewer only reads, and the owner's audit log records it", async () => {
    const [owner, editor, viewer] = [await signUp(api), await signUp(api), await signUp(api)];
    const m = TaskService.method;
    const call = async (method: Parameters<Api["call"]>[0], req: JsonObject, token: string) =>
      ok(await api.call(method, req, token));

    const projectId = ((await call(m.createProject, { name: "Wedding" }, owner.token)).project as JsonObject)
      .id as string;
    for (const [who, role] of [
      [editor, "PROJECT_ROLE_EDITOR"],
      [viewer, "PROJECT_ROLE_VIEWER"],
    ] as const) {
      await call(m.inviteToProject, { projectId, email: who.email, role }, owner.token);
      // Matched by the email claim users puts in the access token.
      const [inv] = (await call(m.listInvitations, {}, who.token)).invitations as JsonObject[];
      expect(inv).toMatchObject({ projectId, projectName: "Wedding", role });
      await call(m.acceptInvitation, { invitationId: inv?.id as string }, who.token);
    }
    const shared = ((await call(m.listProjects, {}, editor.token)).projects as JsonObject[]).find(
      (p) => p.id === projectId,
    );
    expect(shared).toMatchObject({ name: "Wedding", role: "PROJECT_ROLE_EDITOR" });

    const cake = (
      await call(m.createTask, { task: { title: "Order cake", projectId, assigneeId: editor.userId } }, editor.token)
    ).task as JsonObject;
    expect(cake).toMatchObject({ userId: editor.userId, assigneeId: editor.userId, projectId });
    const listed = (await call(m.listTasks, { projectId }, viewer.token)).tasks as JsonObject[];
    expect(listed.map((t) => t.title)).toEqual(["Order cake"]);
    fails(
      await api.call(m.completeTask, { taskId: cake.id as string }, viewer.token),
      Code.PermissionDenied,
      /editor or owner role/,
    );
    const members = (await call(m.listMembers, { projectId }, viewer.token)).members as JsonObject[];
    expect(members.map((x) => [x.userId, x.role])).toEqual([
      [owner.userId, "PROJECT_ROLE_OWNER"],
      [editor.userId, "PROJECT_ROLE_EDITOR"],
      [viewer.userId, "PROJECT_ROLE_VIEWER"],
    ]);
    await call(m.updateMember, { projectId, userId: editor.userId, role: "PROJECT_ROLE_VIEWER" }, owner.token);
    await call(m.removeMember, { projectId, userId: viewer.userId }, viewer.token);
    fails(await api.call(m.getTask, { taskId: cake.id as string }, viewer.token), Code.NotFound);
    const other = await signUp(api);
    fails(await api.call(m.listMembers, { projectId }, other.token), Code.NotFound);
    const declined = (
      await call(m.inviteToProject, { projectId, email: other.email, role: "PROJECT_ROLE_VIEWER" }, owner.token)
    ).invitation as JsonObject;
    await call(m.declineInvitation, { invitationId: declined.id as string }, other.token);
    expect((await call(m.listInvitations, {}, other.token)).invitations ?? []).toEqual([]);

    // project.member_* reach analytics over NATS, in the owner's audit log.
    const actions = await waitFor("the owner's audit log to record the sharing", async () => {
      const page = ok(await api.call(AnalyticsService.method.listAuditEvents, {}, owner.token));
      const got = ((page.events as JsonObject[] | undefined) ?? [])
        .filter((e) => e.resourceId === projectId)
        .map((e) => e.action);
      return got.length === 4 ? got : undefined;
    });
    expect(actions).toEqual([
      "AUDIT_ACTION_PROJECT_UNSHARED",
      "AUDIT_ACTION_PROJECT_MEMBER_ROLE_CHANGED",
      "AUDIT_ACTION_PROJECT_SHARED",
      "AUDIT_ACTION_PROJECT_SHARED",
    ]);
  }, 30_000);
});

// Collaborators see changes live: WatchProject streamed through the gateway (gRPC server stream).
describe("WatchProject through the gateway", () => {
  it("streams an editor's changes to the owner's open watch; a stranger's watch is NOT_FOUND", async () => {
    const api = connectJsonApi(e2e.system.endpoints.gateway);
    const m = TaskService.method;
    const [owner, editor, stranger] = [await signUp(api), await signUp(api), await signUp(api)];
    const call = async (method: Parameters<Api["call"]>[0], req: JsonObject, token: string) =>
      ok(await api.call(method, req, token));
    const projectId = ((await call(m.createProject, { name: "Garden" }, owner.token)).project as JsonObject)
      .id as string;
    await call(m.inviteToProject, { projectId, email: editor.email, role: "PROJECT_ROLE_EDITOR" }, owner.token);
    const [inv] = (await call(m.listInvitations, {}, editor.token)).invitations as JsonObject[];
    await call(m.acceptInvitation, { invitationId: inv?.id as string }, editor.token);

    const tasks = createClient(TaskService, createGrpcTransport({ baseUrl: e2e.system.endpoints.gateway }));
    const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
    const abort = new AbortController();
    const got: WatchProjectResponse[] = [];
    const watching = (async () => {
      try {
        for await (const msg of tasks.watchProject({ projectId }, { ...auth(owner.token), signal: abort.signal }))
          got.push(msg);
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      }
    })();
    // The watch is open once a change made after it arrives: the editor adds tasks until one does.
    const first = await waitFor("the owner's watch to see the editor's task", async () => {
      const t = (await call(m.createTask, { task: { title: "Plant beans", projectId } }, editor.token)).task;
      return got.find((x) => x.taskId === (t as JsonObject).id) ? (t as JsonObject) : undefined;
    });
    await call(m.completeTask, { taskId: first.id as string }, editor.token);
    await waitFor("the completion", () => got.some((x) => x.kind === ProjectChangeKind.TASK_COMPLETED));
    const completed = got.find((x) => x.kind === ProjectChangeKind.TASK_COMPLETED);
    expect([completed?.taskId, completed?.actorId, completed?.taskVersion, completed?.projectId]).toEqual([
      first.id,
      editor.userId,
      2n,
      projectId,
    ]);
    abort.abort();
    await watching;

    const refused = await (async () => {
      try {
        for await (const _ of tasks.watchProject({ projectId }, auth(stranger.token))) return "message";
        return "OK";
      } catch (err) {
        return Code[ConnectError.from(err).code];
      }
    })();
    expect(refused).toBe("NotFound");
  }, 30_000);
});
