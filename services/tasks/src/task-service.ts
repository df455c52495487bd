import { createHash, randomUUID } from "node:crypto";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Priority, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import {
  ProjectChangeKind,
  type TaskInput,
  TaskOrder,
  type TaskService,
} from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { canBeAssigned, checkAssignee, projectAccess, roleIn, taskAccess } from "./access.js";
import { decodeManualPageToken, decodePageToken, encodePageToken, type ListFilter } from "./page-token.js";
import { type ChangeKind, ProjectFeed } from "./project-feed.js";
import { toLabel, toProject } from "./project-record.js";
import { sharingMethods } from "./sharing-service.js";
import { priorityLevel, toTask } from "./task-record.js";
import { checkTimestamp, invalid, normalizeRecurrence, normalizeTimeZone, reminderSeconds } from "./task-rules.js";
import { liveUser, type TaskServiceDeps } from "./task-service-deps.js";
import type { CreateResult, TaskFields, TaskRecord, TaskStatusName, TasksStore } from "./tasks-store.js";

/** Page size when the request says 0 (AIP-158); the contract caps page_size at 100. */
export const DEFAULT_PAGE_SIZE = 50;

/**
 * The public TaskService. The user is always `requireUser(ctx).userId` (from the verified
 * token). Access is per project (access.ts): a task or project the caller has no role in is
 * NOT_FOUND, exactly like one that does not exist, so ids cannot be probed; a member lacking the
 * role is PERMISSION_DENIED. A task keeps its creator's user_id, so store writes are scoped by
 * the task's user_id once the caller's role is checked. The calendar feed methods are in
 * calendar-feed.ts, sharing in sharing-service.ts.
 */
export function taskService(
  deps: TaskServiceDeps,
): Omit<ServiceImpl<typeof TaskService>, "rotateCalendarFeed" | "revokeCalendarFeed" | "getCalendarFeed"> {
  const { store } = deps;
  const now = deps.clock ?? Date.now;
  const feed = deps.feed ?? new ProjectFeed();
  return {
    async createTask(req, ctx) {
      const userId = liveUser(store, ctx);
      // required by the contract, so present once validation passed
      const input = req.task as TaskInput;
      const fields = inputFields("task", input);
      const key = req.idempotencyKey
        ? { scope: "create" as const, key: req.idempotencyKey, fingerprint: digest(fields) }
        : undefined;
      // Resolved inside the create's transaction: the project, labels and parent checked there.
      const result = deps.walSync.commit(() =>
        store.create(userId, () => ({ ...fields, ...placement(store, userId, input, now()) }), {
          id: randomUUID(),
          now: now(),
          maxTasks: deps.maxTasksPerUser,
          ...(key ? { key } : {}),
        }),
      );
      // Answered once on disk (a repeat too: the first create may still be syncing).
      await deps.walSync.sync();
      return { task: toTask(createdTask(result)) };
    },

    async getTask(req, ctx) {
      const userId = liveUser(store, ctx);
      return { task: toTask(taskAccess(store, userId, req.taskId, "viewer")) };
    },

    async listTasks(req, ctx) {
      const userId = liveUser(store, ctx);
      const pageSize = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
      const status: TaskStatusName | null =
        req.status === TaskStatus.COMPLETED ? "completed" : req.status === TaskStatus.OPEN ? "open" : null;
      const priority = req.priority === Priority.UNSPECIFIED ? null : priorityLevel(req.priority);
      // A project the caller has no role in, or another user's label, is NOT_FOUND like a missing one.
      const projectId = req.projectId ? projectAccess(store, userId, req.projectId, "viewer").project.id : null;
      const labelId = req.labelId ? store.labels.require(userId, req.labelId.toLowerCase(), "label_id").id : null;
      const manual = req.order === TaskOrder.MANUAL;
      const filter: ListFilter = {
        userId,
        status,
        priority,
        dueAfterMs: req.dueAfter ? checkTimestamp("due_after", ms(req.dueAfter)) : null,
        dueBeforeMs: req.dueBefore ? checkTimestamp("due_before", ms(req.dueBefore)) : null,
        projectId,
        labelId,
        includeArchived: req.includeArchived,
        manual,
      };
      const after = !req.pageToken
        ? null
        : manual
          ? decodeManualPageToken(req.pageToken, filter)
          : decodePageToken(req.pageToken, filter);
      const rows = store.list({
        ...filter,
        status,
        priority,
        projectId,
        labelId,
        hideArchived: !req.includeArchived,
        order: manual ? "manual" : "due",
        after,
        limit: pageSize + 1,
      });
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      const nextPageToken =
        rows.length > pageSize && last
          ? encodePageToken(
              manual ? { rank: last.task.rank, id: last.task.id } : { dueSort: last.dueSort, id: last.task.id },
              filter,
            )
          : "";
      return { tasks: page.map((r) => toTask(r.task)), nextPageToken };
    },

    async updateTask(req, ctx) {
      const userId = liveUser(store, ctx);
      const task = taskAccess(store, userId, req.taskId, "editor", "task_id", "changing a task");
      if (req.labelIds && task.userId !== userId)
        throw new ConnectError(
          "label_ids: labels are personal; only the task's creator sets them on it",
          Code.PermissionDenied,
        );
      if (req.title !== undefined) checkTitle("title", req.title);
      const timeZone = req.timeZone !== undefined ? normalizeTimeZone("time_zone", req.timeZone) : undefined;
      const newDue = req.dueTime ? checkTimestamp("due_time", ms(req.dueTime)) : undefined;
      const updated = store.update(task.userId, task.id, now(), (cur) => {
        const dueTime = req.clearDueTime ? null : (newDue ?? cur.dueTime);
        const recurrenceRule =
          req.recurrenceRule !== undefined
            ? normalizeRecurrence("recurrence_rule", req.recurrenceRule, dueTime)
            : cur.recurrenceRule;
        const reminderOffsets = req.reminderOffsets
          ? reminderSeconds("reminder_offsets.offsets", req.reminderOffsets.offsets, dueTime)
          : cur.reminderOffsets;
        if (dueTime === null && recurrenceRule !== "")
          throw invalid("clear_due_time", 'the task recurs; also set recurrence_rule to "" to remove the due time');
        if (dueTime === null && reminderOffsets.length > 0)
          throw invalid("clear_due_time", "the task has reminders; also set reminder_offsets to none");
        const next: TaskFields = {
          title: req.title ?? cur.title,
          notes: req.notes ?? cur.notes,
          dueTime,
          timeZone: timeZone ?? cur.timeZone,
          recurrenceRule,
          reminderOffsets,
          parentTaskId: cur.parentTaskId,
          priority: req.priority !== undefined ? priorityLevel(req.priority) : cur.priority,
          projectId: req.projectId !== undefined ? targetProject(store, userId, cur, req.projectId) : cur.projectId,
          labelIds: req.labelIds
            ? store.labels.check(userId, req.labelIds.labelIds, "label_ids.label_ids")
            : cur.labelIds,
          parentId: cur.parentId,
          assigneeId: null,
        };
        // The assignee asked for must be an editor or the owner of the (new) project; one kept
        // from before is dropped when the task moves to a project they cannot edit.
        next.assigneeId =
          req.assigneeId !== undefined
            ? checkAssignee(store, next.projectId, req.assigneeId.toLowerCase() || null, "assignee_id")
            : cur.assigneeId && canBeAssigned(store, next.projectId, cur.assigneeId)
              ? cur.assigneeId
              : null;
        return sameFields(cur, next) ? null : next;
      });
      return { task: toTask(found(updated, req.taskId)) };
    },

    async completeTask(req, ctx) {
      const userId = liveUser(store, ctx);
      const task = taskAccess(store, userId, req.taskId, "editor", "task_id", "completing a task");
      const completed = store.complete(task.userId, task.id, now(), req.completeChildren);
      return { task: toTask(found(completed, req.taskId)) };
    },

    async reopenTask(req, ctx) {
      const userId = liveUser(store, ctx);
      const task = taskAccess(store, userId, req.taskId, "editor", "task_id", "reopening a task");
      const reopened = store.reopen(task.userId, task.id, now());
      return { task: toTask(found(reopened, req.taskId)) };
    },

    /**
     * A second delete of the same task is NOT_FOUND (AIP-135): the task is gone either way, and
     * answering OK for a task that is absent would let a caller probe nothing but would also hide
     * a client bug. Retries of DeleteTask (marked IDEMPOTENT) may therefore see NOT_FOUND after a
     * lost response; callers treat NOT_FOUND on delete as done.
     */
    async deleteTask(req, ctx) {
      const userId = liveUser(store, ctx);
      const task = taskAccess(store, userId, req.taskId, "editor", "task_id", "deleting a task");
      if (!store.delete(task.userId, task.id, now())) {
        throw notFound(req.taskId);
      }
      return {};
    },

    async moveTask(req, ctx) {
      const userId = liveUser(store, ctx);
      const task = taskAccess(store, userId, req.taskId, "editor", "task_id", "moving a task");
      const field = req.afterTaskId ? "after_task_id" : "before_task_id";
      const n = taskAccess(
        store,
        userId,
        req.afterTaskId || req.beforeTaskId,
        "editor",
        field,
        `moving next to ${field}`,
      );
      const neighbour = req.afterTaskId ? { after: n.id } : { before: n.id };
      return { task: toTask(store.move(task.userId, task.id, neighbour, now())) };
    },

    async listProjects(req, ctx) {
      const userId = liveUser(store, ctx);
      const own = store.projects.list(userId, req.includeArchived, now()).map((p) => toProject(p));
      // Shared with the caller: after the caller's own, by name (their order is the owner's).
      const shared = store.sharing
        .sharedWith(userId)
        .flatMap(({ projectId, role }) => {
          const p = store.projects.getAny(projectId);
          return p && (req.includeArchived || !p.archived) ? [toProject(p, role)] : [];
        })
        .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
      return { projects: [...own, ...shared] };
    },

    async createProject(req, ctx) {
      const userId = liveUser(store, ctx);
      const name = checkName("name", req.name);
      return { project: toProject(store.projects.create(userId, name, now(), deps.maxProjectsPerUser)) };
    },

    async updateProject(req, ctx) {
      const userId = liveUser(store, ctx);
      projectAccess(store, userId, req.projectId, "owner", "project_id", "renaming or archiving a project");
      const change = {
        ...(req.name !== undefined ? { name: checkName("name", req.name) } : {}),
        ...(req.archived !== undefined ? { archived: req.archived } : {}),
      };
      return { project: toProject(store.projects.update(userId, req.projectId.toLowerCase(), change, now())) };
    },

    async moveProject(req, ctx) {
      const userId = liveUser(store, ctx);
      // The project order is the owner's; a project shared with the caller is listed by name.
      projectAccess(store, userId, req.projectId, "owner", "project_id", "reordering a project");
      const neighbour = req.afterProjectId
        ? { after: req.afterProjectId.toLowerCase() }
        : { before: req.beforeProjectId.toLowerCase() };
      return { project: toProject(store.projects.move(userId, req.projectId.toLowerCase(), neighbour, now())) };
    },

    async deleteProject(req, ctx) {
      const userId = liveUser(store, ctx);
      projectAccess(store, userId, req.projectId, "owner", "project_id", "deleting a project");
      return { deletedTaskCount: BigInt(store.deleteProject(userId, req.projectId.toLowerCase(), now())) };
    },

    async listLabels(_req, ctx) {
      const userId = liveUser(store, ctx);
      return { labels: store.labels.list(userId).map(toLabel) };
    },

    async createLabel(req, ctx) {
      const userId = liveUser(store, ctx);
      return {
        label: toLabel(store.labels.create(userId, checkName("name", req.name), now(), deps.maxLabelsPerUser)),
      };
    },

    async updateLabel(req, ctx) {
      const userId = liveUser(store, ctx);
      return {
        label: toLabel(store.labels.rename(userId, req.labelId.toLowerCase(), checkName("name", req.name), now())),
      };
    },

    async deleteLabel(req, ctx) {
      const userId = liveUser(store, ctx);
      store.labels.delete(userId, req.labelId.toLowerCase(), now());
      return {};
    },

    ...sharingMethods(deps),

    /**
     * The project's committed changes until the caller cancels. Access is checked at open (a
     * stranger is NOT_FOUND like a missing id) and again before each message, so a member removed
     * (or leaving, or deleted) gets PERMISSION_DENIED at the change that removed them, and the
     * watchers of a deleted project NOT_FOUND at its deletion.
     */
    async *watchProject(req, ctx) {
      const userId = liveUser(store, ctx);
      const { project } = projectAccess(store, userId, req.projectId, "viewer");
      // ctx.signal aborts when the client cancels or the server shuts down: the stream then ends.
      for await (const c of feed.subscribe(project.id, ctx.signal)) {
        const p = store.projects.getAny(project.id);
        if (c.kind === "project_deleted" || !p)
          throw new ConnectError(`project_id: project ${project.id} was deleted`, Code.NotFound);
        if (store.isDeletedUser(userId) || !roleIn(store, p, userId))
          throw new ConnectError("you are no longer a member of this project", Code.PermissionDenied);
        yield {
          projectId: c.projectId,
          kind: CHANGE_KINDS[c.kind],
          taskId: c.taskId,
          taskVersion: BigInt(c.taskVersion),
          actorId: c.actorId,
          memberUserId: c.memberUserId,
          changeTime: timestampFromMs(c.time),
        };
      }
    },
  };
}

const CHANGE_KINDS: Record<Exclude<ChangeKind, "project_deleted">, ProjectChangeKind> = {
  task_created: ProjectChangeKind.TASK_CREATED,
  task_updated: ProjectChangeKind.TASK_UPDATED,
  task_completed: ProjectChangeKind.TASK_COMPLETED,
  task_reopened: ProjectChangeKind.TASK_REOPENED,
  task_deleted: ProjectChangeKind.TASK_DELETED,
  task_moved: ProjectChangeKind.TASK_MOVED,
  project_updated: ProjectChangeKind.PROJECT_UPDATED,
  member_changed: ProjectChangeKind.MEMBER_CHANGED,
};

/**
 * Where a new task goes (called inside the create's transaction): a subtask is in its parent's
 * project (the parent must be an open top-level task); otherwise the named project or the Inbox,
 * which must not be archived. Labels must be the caller's.
 */
function placement(
  store: TasksStore,
  userId: string,
  input: TaskInput,
  now: number,
): Pick<TaskFields, "projectId" | "labelIds" | "parentId" | "assigneeId"> {
  let projectId: string;
  let parentId: string | null = null;
  if (input.parentId) {
    const parent = taskAccess(store, userId, input.parentId, "editor", "task.parent_id", "adding a subtask");
    if (parent.parentId) throw invalid("task.parent_id", "that task is itself a subtask; subtasks are one level deep");
    if (parent.status === "completed")
      throw new ConnectError("task.parent_id: the parent task is completed; reopen it first", Code.FailedPrecondition);
    if (input.projectId && input.projectId.toLowerCase() !== parent.projectId)
      throw invalid("task.project_id", "a subtask is in its parent's project; leave project_id empty");
    projectId = parent.projectId;
    parentId = parent.id;
  } else {
    projectId = input.projectId
      ? projectAccess(store, userId, input.projectId, "editor", "task.project_id", "adding a task").project.id
      : store.projects.inbox(userId, now).id;
  }
  if (store.projects.getAny(projectId)?.archived)
    throw new ConnectError("task.project_id: the project is archived; unarchive it first", Code.FailedPrecondition);
  return {
    projectId,
    parentId,
    labelIds: store.labels.check(userId, input.labelIds, "task.label_ids"),
    assigneeId: checkAssignee(store, projectId, input.assigneeId.toLowerCase() || null, "task.assignee_id"),
  };
}

/** UpdateTask's project_id: a top-level task may move to any unarchived project the caller edits. */
function targetProject(store: TasksStore, userId: string, cur: TaskRecord, projectId: string): string {
  const p = projectAccess(store, userId, projectId, "editor", "project_id", "moving a task there").project;
  if (p.id === cur.projectId) return p.id;
  if (cur.parentId) throw invalid("project_id", "a subtask moves with its parent; move the parent instead");
  if (p.archived)
    throw new ConnectError("project_id: the project is archived; unarchive it first", Code.FailedPrecondition);
  return p.id;
}

function checkName(field: string, name: string): string {
  if (name.trim() === "") throw invalid(field, "must not be blank");
  return name.trim();
}

/** A validated TaskInput as stored fields; each problem is INVALID_ARGUMENT under `prefix`. */
export function inputFields(prefix: string, input: TaskInput): TaskFields {
  checkTitle(`${prefix}.title`, input.title);
  const dueTime = input.dueTime ? checkTimestamp(`${prefix}.due_time`, ms(input.dueTime)) : null;
  return {
    title: input.title,
    notes: input.notes,
    dueTime,
    timeZone: normalizeTimeZone(`${prefix}.time_zone`, input.timeZone),
    recurrenceRule: normalizeRecurrence(`${prefix}.recurrence_rule`, input.recurrenceRule, dueTime),
    reminderOffsets: reminderSeconds(`${prefix}.reminder_offsets`, input.reminderOffsets, dueTime),
    parentTaskId: null,
    priority: priorityLevel(input.priority),
    // placement() resolves these inside the create's transaction; here they are what was asked.
    projectId: input.projectId.toLowerCase(),
    labelIds: input.labelIds.map((l) => l.toLowerCase()),
    parentId: input.parentId ? input.parentId.toLowerCase() : null,
    assigneeId: input.assigneeId ? input.assigneeId.toLowerCase() : null,
  };
}

/** The task a create produced or repeated, or the error its result stands for. */
export function createdTask(result: CreateResult): TaskRecord {
  switch (result.kind) {
    case "created":
    case "repeat":
      return result.task;
    case "key-reused":
      throw invalid("idempotency_key", "was already used for a different request; use a new key for a new task");
    case "key-task-deleted":
      throw new ConnectError("the task created with this idempotency_key has since been deleted", Code.NotFound);
    case "limit":
      throw new ConnectError(`task limit reached: at most ${result.max} tasks per user`, Code.ResourceExhausted);
    case "parent-not-found":
      throw new ConnectError("parent task not found", Code.NotFound);
  }
}

/** Timestamp → epoch ms, truncated to the millisecond (the stored precision). */
export function ms(t: Timestamp): number {
  return Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000);
}

export function digest(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("base64url");
}

function checkTitle(field: string, title: string): void {
  if (title.trim() === "") throw invalid(field, "must not be blank");
}

function found(task: TaskRecord | undefined, id: string): TaskRecord {
  if (!task) throw notFound(id);
  return task;
}

function notFound(id: string): ConnectError {
  return new ConnectError(`task ${id} not found`, Code.NotFound);
}

function sameFields(a: TaskFields, b: TaskFields): boolean {
  return (
    a.title === b.title &&
    a.notes === b.notes &&
    a.dueTime === b.dueTime &&
    a.timeZone === b.timeZone &&
    a.recurrenceRule === b.recurrenceRule &&
    a.priority === b.priority &&
    a.projectId === b.projectId &&
    a.labelIds.join() === b.labelIds.join() &&
    a.assigneeId === b.assigneeId &&
    JSON.stringify(a.reminderOffsets) === JSON.stringify(b.reminderOffsets)
  );
}
