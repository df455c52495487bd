import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { ProjectRole, type Task } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import {
  ProjectChangeKind,
  type TaskService,
  type WatchProjectResponse,
} from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import type { GrpcClient } from "@taskmesh/platform";
import { waitFor } from "@taskmesh/platform/testing";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProjectFeed } from "./project-feed.js";
import { type Harness, startTasks } from "./tasks.test-util.js";

type Client = GrpcClient<typeof TaskService>;

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (e) {
    if (e instanceof ConnectError) return Code[e.code];
    throw e;
  }
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ConnectError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

interface Person {
  id: string;
  email: string;
  c: Client;
}

describe("TaskService sharing", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startTasks();
  });
  afterAll(() => h.stop());

  const person = async (): Promise<Person> => {
    const id = randomUUID();
    const email = `${id.slice(0, 8)}@Example.test`;
    return { id, email, c: await h.as(id, email) };
  };
  const task = async (c: Client, title: string, more: Record<string, unknown> = {}) =>
    (await c.createTask({ task: { title, ...more } })).task as Task;

  /** owner's project shared with an editor and a viewer (both accepted). */
  async function shared(name = "Family") {
    const [owner, editor, viewer, stranger] = await Promise.all([person(), person(), person(), person()]);
    const project = (await owner.c.createProject({ name })).project;
    const projectId = project?.id ?? "";
    for (const [p, role] of [
      [editor, ProjectRole.EDITOR],
      [viewer, ProjectRole.VIEWER],
    ] as const) {
      // Emails are matched without regard to case.
      const inv = (await owner.c.inviteToProject({ projectId, email: p.email.toUpperCase(), role })).invitation;
      await p.c.acceptInvitation({ invitationId: inv?.id ?? "" });
    }
    return { owner, editor, viewer, stranger, projectId };
  }

  it("invites by email: the invitee lists and accepts it, then sees the project with their role and the members", async () => {
    const [owner, invitee, other] = await Promise.all([person(), person(), person()]);
    const project = (await owner.c.createProject({ name: "Trip" })).project;
    const projectId = project?.id ?? "";
    const inv = (await owner.c.inviteToProject({ projectId, email: invitee.email, role: ProjectRole.EDITOR }))
      .invitation;
    expect(inv).toMatchObject({ projectId, email: invitee.email.toLowerCase(), role: ProjectRole.EDITOR });
    const listed = (await invitee.c.listInvitations({})).invitations;
    expect(listed.map((i) => [i.id, i.projectName, i.role])).toEqual([[inv?.id, "Trip", ProjectRole.EDITOR]]);
    // Someone else's invitation is not found, for accepting, declining and listing alike.
    expect((await other.c.listInvitations({})).invitations).toEqual([]);
    expect(await code(other.c.acceptInvitation({ invitationId: inv?.id ?? "" }))).toBe("NotFound");
    expect(await code(other.c.declineInvitation({ invitationId: inv?.id ?? "" }))).toBe("NotFound");

    const accepted = (await invitee.c.acceptInvitation({ invitationId: inv?.id ?? "" })).project;
    expect(accepted).toMatchObject({ id: projectId, name: "Trip", role: ProjectRole.EDITOR });
    expect((await invitee.c.listInvitations({})).invitations).toEqual([]);
    const projects = (await invitee.c.listProjects({})).projects;
    expect(projects.map((p) => [p.name, p.role])).toEqual([
      ["Inbox", ProjectRole.OWNER],
      ["Trip", ProjectRole.EDITOR],
    ]);
    const members = (await invitee.c.listMembers({ projectId })).members;
    expect(members.map((m) => [m.userId, m.email, m.role])).toEqual([
      [owner.id, owner.email.toLowerCase(), ProjectRole.OWNER],
      [invitee.id, invitee.email.toLowerCase(), ProjectRole.EDITOR],
    ]);
  });

  it("refuses to share the Inbox, to invite oneself or a member again, and a declined invitation is gone", async () => {
    const { owner, editor, projectId } = await shared();
    const inboxId = (await owner.c.listProjects({})).projects[0]?.id ?? "";
    const inbox = await failure(owner.c.inviteToProject({ projectId: inboxId, email: "x@example.test", role: 1 }));
    expect([inbox.code, inbox.rawMessage]).toEqual([Code.FailedPrecondition, "the Inbox cannot be shared"]);
    const self = await failure(owner.c.inviteToProject({ projectId, email: owner.email, role: 1 }));
    expect(self.code).toBe(Code.InvalidArgument);
    expect(self.rawMessage).toMatch(/^email: /);
    const again = await failure(owner.c.inviteToProject({ projectId, email: editor.email, role: 1 }));
    expect([again.code, again.rawMessage]).toEqual([
      Code.AlreadyExists,
      `email: ${editor.email.toLowerCase()} is already a member`,
    ]);
    const someone = await person();
    const inv = (await owner.c.inviteToProject({ projectId, email: someone.email, role: 1 })).invitation;
    expect(await code(owner.c.inviteToProject({ projectId, email: someone.email, role: 2 }))).toBe("AlreadyExists");
    await someone.c.declineInvitation({ invitationId: inv?.id ?? "" });
    expect(await code(someone.c.acceptInvitation({ invitationId: inv?.id ?? "" }))).toBe("NotFound");
    expect(await code(someone.c.listMembers({ projectId }))).toBe("NotFound");
    // Bad input names the field.
    const bad = await failure(owner.c.inviteToProject({ projectId, email: "not-an-email", role: 1 }));
    expect([bad.code, bad.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining("email")]);
    const owned = await failure(owner.c.inviteToProject({ projectId, email: "y@example.test", role: 3 }));
    expect([owned.code, owned.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining("role")]);
  });

  it("gives each role exactly its rights, and strangers NOT_FOUND like a missing id (every project and task method)", async () => {
    const { owner, editor, viewer, stranger, projectId } = await shared();
    const other = (await owner.c.createProject({ name: "Other" })).project?.id ?? "";
    type Who = "owner" | "editor" | "viewer" | "stranger";
    const who: Record<Who, Person> = { owner, editor, viewer, stranger };
    const done = await task(owner.c, "done", { projectId });
    await owner.c.completeTask({ taskId: done.id });
    // Each case gets fresh ids (a delete or move must not change what the next caller meets).
    const cases: [string, (p: Person) => Promise<unknown>, Record<Who, string>][] = [
      [
        "GetTask",
        async (p) => p.c.getTask({ taskId: (await task(owner.c, "t", { projectId })).id }),
        { owner: "OK", editor: "OK", viewer: "OK", stranger: "NotFound" },
      ],
      [
        "ListTasks(project_id)",
        (p) => p.c.listTasks({ projectId }),
        { owner: "OK", editor: "OK", viewer: "OK", stranger: "NotFound" },
      ],
      [
        "CreateTask(project_id)",
        (p) => p.c.createTask({ task: { title: "new", projectId } }),
        { owner: "OK", editor: "OK", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "CreateTask(parent_id)",
        async (p) =>
          p.c.createTask({ task: { title: "sub", parentId: (await task(owner.c, "parent", { projectId })).id } }),
        { owner: "OK", editor: "OK", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "UpdateTask",
        async (p) => p.c.updateTask({ taskId: (await task(owner.c, "t", { projectId })).id, title: "changed" }),
        { owner: "OK", editor: "OK", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "CompleteTask",
        async (p) => p.c.completeTask({ taskId: (await task(owner.c, "t", { projectId })).id }),
        { owner: "OK", editor: "OK", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "ReopenTask",
        (p) => p.c.reopenTask({ taskId: done.id }),
        { owner: "OK", editor: "OK", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "DeleteTask",
        async (p) => p.c.deleteTask({ taskId: (await task(owner.c, "t", { projectId })).id }),
        { owner: "OK", editor: "OK", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "MoveTask",
        async (p) => {
          const [x, y] = [await task(owner.c, "x", { projectId }), await task(owner.c, "y", { projectId })];
          return p.c.moveTask({ taskId: y.id, beforeTaskId: x.id });
        },
        { owner: "OK", editor: "OK", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "UpdateProject",
        (p) => p.c.updateProject({ projectId, name: "Family" }),
        { owner: "OK", editor: "PermissionDenied", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "MoveProject",
        (p) => p.c.moveProject({ projectId, afterProjectId: other }),
        { owner: "OK", editor: "PermissionDenied", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "DeleteProject",
        async (p) => {
          const s = await shared("doomed");
          // The same role in another shared project: the caller is mapped onto it.
          const mine = p === owner ? s.owner : p === editor ? s.editor : p === viewer ? s.viewer : s.stranger;
          return mine.c.deleteProject({ projectId: s.projectId });
        },
        { owner: "OK", editor: "PermissionDenied", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "InviteToProject",
        (p) => p.c.inviteToProject({ projectId, email: `${randomUUID()}@example.test`, role: 2 }),
        { owner: "OK", editor: "PermissionDenied", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "ListMembers",
        (p) => p.c.listMembers({ projectId }),
        { owner: "OK", editor: "OK", viewer: "OK", stranger: "NotFound" },
      ],
      [
        "UpdateMember",
        (p) => p.c.updateMember({ projectId, userId: viewer.id, role: ProjectRole.VIEWER }),
        { owner: "OK", editor: "PermissionDenied", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
      [
        "RemoveMember(another)",
        async (p) => {
          const s = await shared("removal");
          const mine = p === owner ? s.owner : p === editor ? s.editor : p === viewer ? s.viewer : s.stranger;
          return mine.c.removeMember({ projectId: s.projectId, userId: p === viewer ? s.editor.id : s.viewer.id });
        },
        { owner: "OK", editor: "PermissionDenied", viewer: "PermissionDenied", stranger: "NotFound" },
      ],
    ];
    const got: [string, Who, string][] = [];
    const want: [string, Who, string][] = [];
    for (const [name, run, expected] of cases)
      for (const w of Object.keys(expected) as Who[]) {
        got.push([name, w, await code(run(who[w]))]);
        want.push([name, w, expected[w]]);
      }
    expect(got).toEqual(want);
  });

  it("tells a stranger nothing: a shared project's ids answer exactly like made-up ids", async () => {
    const { owner, stranger, projectId } = await shared();
    const t = await task(owner.c, "secret", { projectId });
    const made = randomUUID();
    const norm = (e: ConnectError, id: string) => [Code[e.code], e.rawMessage.replaceAll(id, "<id>")];
    for (const [real, fake, call] of [
      [t.id, made, (id: string) => stranger.c.getTask({ taskId: id })],
      [projectId, made, (id: string) => stranger.c.listMembers({ projectId: id })],
      [projectId, made, (id: string) => stranger.c.listTasks({ projectId: id })],
    ] as const)
      expect(norm(await failure(call(real)), real)).toEqual(norm(await failure(call(fake)), fake));
  });

  it("keeps the creator on a task an editor adds: the owner lists it in the project, the editor in their own list", async () => {
    const { owner, editor, viewer, projectId } = await shared();
    const t = await task(editor.c, "bring cake", { projectId });
    expect(t.userId).toBe(editor.id);
    const ownerTask = await task(owner.c, "book hall", { projectId });
    const inProject = (await viewer.c.listTasks({ projectId, order: 1 })).tasks;
    expect(inProject.map((x) => [x.title, x.userId])).toEqual([
      ["bring cake", editor.id],
      ["book hall", owner.id],
    ]);
    // The editor moves the owner's task before their own: one manual order across creators.
    await editor.c.moveTask({ taskId: ownerTask.id, beforeTaskId: t.id });
    expect((await owner.c.listTasks({ projectId, order: 1 })).tasks.map((x) => x.title)).toEqual([
      "book hall",
      "bring cake",
    ]);
    // Without project_id each lists the tasks they created.
    expect((await editor.c.listTasks({})).tasks.map((x) => x.title)).toEqual(["bring cake"]);
    // Labels are personal: an editor cannot set them on the owner's task.
    const denied = await failure(editor.c.updateTask({ taskId: ownerTask.id, labelIds: { labelIds: [] } }));
    expect([denied.code, denied.rawMessage]).toEqual([
      Code.PermissionDenied,
      "label_ids: labels are personal; only the task's creator sets them on it",
    ]);
    // The editor completes the owner's task and adds a subtask under it.
    const sub = await task(editor.c, "candles", { parentId: ownerTask.id });
    expect(sub.projectId).toBe(projectId);
    expect(await code(editor.c.completeTask({ taskId: ownerTask.id, completeChildren: true }))).toBe("OK");
    expect((await owner.c.getTask({ taskId: sub.id })).task?.status).toBe(2);
  });

  it("takes access away on removal and on leaving; a viewer cannot move a task into the project", async () => {
    const { owner, editor, viewer, projectId } = await shared();
    const t = await task(editor.c, "editor's", { projectId });
    const own = await task(viewer.c, "viewer's own");
    const denied = await failure(viewer.c.updateTask({ taskId: own.id, projectId }));
    expect([denied.code, denied.rawMessage]).toEqual([
      Code.PermissionDenied,
      "moving a task there needs the editor or owner role in the project; you are a viewer",
    ]);
    const roles = await failure(editor.c.updateMember({ projectId, userId: viewer.id, role: ProjectRole.EDITOR }));
    expect([roles.code, roles.rawMessage]).toEqual([
      Code.PermissionDenied,
      "changing roles needs the owner role in the project; you are a editor",
    ]);
    await owner.c.removeMember({ projectId, userId: editor.id });
    expect(await code(editor.c.getTask({ taskId: t.id }))).toBe("NotFound");
    expect(await code(editor.c.listTasks({ projectId }))).toBe("NotFound");
    // Their task stays in the project, and leaves their own list.
    expect((await owner.c.getTask({ taskId: t.id })).task?.userId).toBe(editor.id);
    expect((await editor.c.listTasks({})).tasks).toEqual([]);
    // A member leaves; the owner cannot.
    await viewer.c.removeMember({ projectId, userId: viewer.id });
    expect((await viewer.c.listProjects({})).projects.map((p) => p.name)).toEqual(["Inbox"]);
    expect(await code(owner.c.removeMember({ projectId, userId: owner.id }))).toBe("FailedPrecondition");
    expect((await owner.c.listMembers({ projectId })).members.map((m) => m.role)).toEqual([ProjectRole.OWNER]);
  });

  it("deletes a shared project with every member's tasks; purging the owner takes their projects and members' tasks", async () => {
    const a = await shared();
    const editorTask = await task(a.editor.c, "in a doomed project", { projectId: a.projectId });
    expect((await a.owner.c.deleteProject({ projectId: a.projectId })).deletedTaskCount).toBe(1n);
    expect(await code(a.editor.c.getTask({ taskId: editorTask.id }))).toBe("NotFound");
    expect((await a.editor.c.listProjects({})).projects.map((p) => p.name)).toEqual(["Inbox"]);

    const b = await shared();
    const kept = await task(b.editor.c, "editor's inbox task");
    const gone = await task(b.editor.c, "editor's in owner's project", { projectId: b.projectId });
    // The owner is also a member of the editor's project: that membership goes too.
    const theirs = (await b.editor.c.createProject({ name: "Editor's" })).project?.id ?? "";
    const inv = (await b.editor.c.inviteToProject({ projectId: theirs, email: b.owner.email, role: 2 })).invitation;
    await b.owner.c.acceptInvitation({ invitationId: inv?.id ?? "" });
    await h.internal().purgeUser({ userId: b.owner.id });
    expect(await code(b.editor.c.getTask({ taskId: gone.id }))).toBe("NotFound");
    expect((await b.editor.c.getTask({ taskId: kept.id })).task?.title).toBe("editor's inbox task");
    expect((await b.editor.c.listMembers({ projectId: theirs })).members.map((m) => m.userId)).toEqual([b.editor.id]);
    const db = new Database(h.dbPath, { readonly: true });
    try {
      const rows = (sql: string, ...args: string[]) => db.prepare(sql).all(...args);
      expect(
        rows("SELECT * FROM project_members WHERE user_id = ? OR project_id = ?", b.owner.id, b.projectId),
      ).toEqual([]);
      expect(rows("SELECT * FROM project_invitations WHERE project_id = ?", b.projectId)).toEqual([]);
      expect(rows("SELECT id FROM projects WHERE user_id = ?", b.owner.id)).toEqual([]);
      // The editor's task in the owner's project left with a task.deleted (its consumers are the editor's).
      const deleted = (rows("SELECT data FROM outbox") as { data: Buffer }[])
        .map((r) => fromBinary(EnvelopeSchema, r.data))
        .filter((e) => e.aggregateId === gone.id && e.type === "task.deleted");
      expect(deleted.map((e) => e.userId)).toEqual([b.editor.id]);
    } finally {
      db.close();
    }
  });

  it("assigns tasks to the owner or an editor only, and unassigns a member made viewer or removed", async () => {
    const { owner, editor, viewer, stranger, projectId } = await shared();
    const t = await task(owner.c, "assigned", { projectId, assigneeId: editor.id });
    expect(t.assigneeId).toBe(editor.id);
    for (const who of [viewer, stranger]) {
      const e = await failure(owner.c.createTask({ task: { title: "x", projectId, assigneeId: who.id } }));
      expect([e.code, e.rawMessage]).toEqual([
        Code.InvalidArgument,
        "task.assignee_id: must be the project's owner or one of its editors",
      ]);
      const u = await failure(owner.c.updateTask({ taskId: t.id, assigneeId: who.id }));
      expect([u.code, u.rawMessage]).toEqual([
        Code.InvalidArgument,
        "assignee_id: must be the project's owner or one of its editors",
      ]);
    }
    expect((await editor.c.updateTask({ taskId: t.id, assigneeId: owner.id })).task?.assigneeId).toBe(owner.id);
    expect((await editor.c.updateTask({ taskId: t.id, assigneeId: "" })).task?.assigneeId).toBe("");
    await owner.c.updateTask({ taskId: t.id, assigneeId: editor.id });
    await owner.c.updateMember({ projectId, userId: editor.id, role: ProjectRole.VIEWER });
    expect((await owner.c.getTask({ taskId: t.id })).task?.assigneeId).toBe("");
    await owner.c.updateMember({ projectId, userId: editor.id, role: ProjectRole.EDITOR });
    await owner.c.updateTask({ taskId: t.id, assigneeId: editor.id });
    await editor.c.removeMember({ projectId, userId: editor.id });
    const after = (await owner.c.getTask({ taskId: t.id })).task;
    expect([after?.assigneeId, after?.userId]).toEqual(["", owner.id]);
  });

  /** An open WatchProject: the messages so far, and how it ended (a code name, "OK" or undefined while open). */
  async function watch(p: Person, projectId: string) {
    const abort = new AbortController();
    const w = { got: [] as WatchProjectResponse[], end: undefined as string | undefined, abort };
    const before = h.app.projectWatchers;
    void (async () => {
      try {
        for await (const m of p.c.watchProject({ projectId }, { signal: abort.signal })) w.got.push(m);
        w.end = "OK";
      } catch (e) {
        w.end = e instanceof ConnectError ? Code[e.code] : String(e);
      }
    })();
    await waitFor("the watch to open", () => h.app.projectWatchers > before || w.end !== undefined);
    return w;
  }

  it("streams an editor's create, complete and delete to the owner's and a viewer's open WatchProject; a removed member's stream ends", async () => {
    const { owner, editor, viewer, stranger, projectId } = await shared();
    const [ownerW, viewerW, editorW] = [
      await watch(owner, projectId),
      await watch(viewer, projectId),
      await watch(editor, projectId),
    ];
    // A stranger's watch is NOT_FOUND, exactly like a made-up id.
    expect(await code(stranger.c.watchProject({ projectId })[Symbol.asyncIterator]().next())).toBe("NotFound");
    expect(await code(stranger.c.watchProject({ projectId: randomUUID() })[Symbol.asyncIterator]().next())).toBe(
      "NotFound",
    );

    const t = await task(editor.c, "from the editor", { projectId });
    await editor.c.completeTask({ taskId: t.id });
    await editor.c.deleteTask({ taskId: t.id });
    const expected = [
      [ProjectChangeKind.TASK_CREATED, t.id, 1n, editor.id],
      [ProjectChangeKind.TASK_COMPLETED, t.id, 2n, editor.id],
      [ProjectChangeKind.TASK_DELETED, t.id, 3n, editor.id],
    ];
    for (const w of [ownerW, viewerW]) {
      await waitFor("three changes", () => w.got.length >= 3);
      expect(w.got.map((m) => [m.kind, m.taskId, m.taskVersion, m.actorId])).toEqual(expected);
      expect(w.got.every((m) => m.projectId === projectId && m.changeTime !== undefined)).toBe(true);
    }
    // A task outside the project is not streamed.
    await task(owner.c, "in the owner's Inbox");

    // Removing the editor tells the others, and ends the editor's stream.
    await owner.c.removeMember({ projectId, userId: editor.id });
    await waitFor("the editor's stream to end", () => editorW.end);
    expect(editorW.end).toBe("PermissionDenied");
    await waitFor("the member change", () => ownerW.got.length >= 4);
    expect(ownerW.got.slice(3).map((m) => [m.kind, m.memberUserId, m.actorId])).toEqual([
      [ProjectChangeKind.MEMBER_CHANGED, editor.id, owner.id],
    ]);
    // Deleting the project ends every watch with NOT_FOUND.
    await owner.c.deleteProject({ projectId });
    await waitFor("the watches to end", () => ownerW.end && viewerW.end);
    expect([ownerW.end, viewerW.end]).toEqual(["NotFound", "NotFound"]);
    expect(h.app.projectWatchers).toBe(0);
  });

  it("ends a WatchProject reader that falls more than its buffer behind with RESOURCE_EXHAUSTED, after what it holds", async () => {
    const feed = new ProjectFeed({ maxQueued: 2 });
    const abort = new AbortController();
    const sub = feed.subscribe("p1", abort.signal);
    const first = sub.next(); // subscribes, then waits for a change
    const change = (taskId: string) =>
      ({
        projectId: "p1",
        kind: "task_created",
        taskId,
        taskVersion: 1,
        actorId: "u",
        memberUserId: "",
        time: 0,
      }) as const;
    for (const id of ["t1", "t2", "t3", "t4"]) feed.publish(change(id));
    feed.publish({ ...change("t5"), projectId: "p2" }); // another project's: not this stream's
    expect((await first).value?.taskId).toBe("t1");
    // Two fit the buffer; t3 and t4 overflowed it: the reader gets the two, then the error.
    expect((await sub.next()).value?.taskId).toBe("t2");
    expect(await code(sub.next())).toBe("ResourceExhausted");
    expect(feed.watchers).toBe(0);
  });
});
