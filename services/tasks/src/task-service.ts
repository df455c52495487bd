import { createHash, randomUUID } from "node:crypto";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { Priority, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskInput, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { requireUser } from "@taskmesh/platform";
import { decodePageToken, encodePageToken, type ListFilter } from "./page-token.js";
import { priorityLevel, toTask } from "./task-record.js";
import { checkTimestamp, invalid, normalizeRecurrence, normalizeTimeZone, reminderSeconds } from "./task-rules.js";
import type { CreateResult, TaskFields, TaskRecord, TaskStatusName, TasksStore } from "./tasks-store.js";

export interface TaskServiceDeps {
  store: TasksStore;
  /** Most tasks one user may hold; a create beyond it is RESOURCE_EXHAUSTED. */
  maxTasksPerUser: number;
  /** Current time in epoch ms. Default Date.now. */
  clock?: () => number;
}

/** Page size when the request says 0 (AIP-158); the contract caps page_size at 100. */
export const DEFAULT_PAGE_SIZE = 50;

/**
 * The public TaskService. The user is always `requireUser(ctx).userId` (from the verified
 * token) and every store call is scoped by it; a task of another user is NOT_FOUND, exactly
 * like a task that does not exist, so ids of other users' tasks cannot be probed. The calendar
 * feed methods are in calendar-feed.ts.
 */
export function taskService(
  deps: TaskServiceDeps,
): Omit<ServiceImpl<typeof TaskService>, "rotateCalendarFeed" | "revokeCalendarFeed" | "getCalendarFeed"> {
  const { store } = deps;
  const now = deps.clock ?? Date.now;
  return {
    async createTask(req, ctx) {
      const userId = liveUser(store, ctx);
      // required by the contract, so present once validation passed
      const fields = inputFields("task", req.task as TaskInput);
      const key = req.idempotencyKey
        ? { scope: "create" as const, key: req.idempotencyKey, fingerprint: digest(fields) }
        : undefined;
      const result = store.create(userId, () => fields, {
        id: randomUUID(),
        now: now(),
        maxTasks: deps.maxTasksPerUser,
        ...(key ? { key } : {}),
      });
      return { task: toTask(createdTask(result)) };
    },

    async getTask(req, ctx) {
      const userId = liveUser(store, ctx);
      return { task: toTask(found(store.get(userId, taskId(req.taskId)), req.taskId)) };
    },

    async listTasks(req, ctx) {
      const userId = liveUser(store, ctx);
      const pageSize = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
      const status: TaskStatusName | null =
        req.status === TaskStatus.COMPLETED ? "completed" : req.status === TaskStatus.OPEN ? "open" : null;
      const priority = req.priority === Priority.UNSPECIFIED ? null : priorityLevel(req.priority);
      const filter: ListFilter = {
        userId,
        status,
        priority,
        dueAfterMs: req.dueAfter ? checkTimestamp("due_after", ms(req.dueAfter)) : null,
        dueBeforeMs: req.dueBefore ? checkTimestamp("due_before", ms(req.dueBefore)) : null,
      };
      const after = req.pageToken ? decodePageToken(req.pageToken, filter) : null;
      const rows = store.list({ ...filter, status, priority, after, limit: pageSize + 1 });
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      const nextPageToken =
        rows.length > pageSize && last ? encodePageToken({ dueSort: last.dueSort, id: last.task.id }, filter) : "";
      return { tasks: page.map((r) => toTask(r.task)), nextPageToken };
    },

    async updateTask(req, ctx) {
      const userId = liveUser(store, ctx);
      if (req.title !== undefined) checkTitle("title", req.title);
      const timeZone = req.timeZone !== undefined ? normalizeTimeZone("time_zone", req.timeZone) : undefined;
      const newDue = req.dueTime ? checkTimestamp("due_time", ms(req.dueTime)) : undefined;
      const updated = store.update(userId, taskId(req.taskId), now(), (cur) => {
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
        };
        return sameFields(cur, next) ? null : next;
      });
      return { task: toTask(found(updated, req.taskId)) };
    },

    async completeTask(req, ctx) {
      const userId = liveUser(store, ctx);
      const completed = store.complete(userId, taskId(req.taskId), now());
      return { task: toTask(found(completed, req.taskId)) };
    },

    async reopenTask(req, ctx) {
      const userId = liveUser(store, ctx);
      const reopened = store.reopen(userId, taskId(req.taskId), now());
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
      if (!store.delete(userId, taskId(req.taskId), now())) {
        throw notFound(req.taskId);
      }
      return {};
    },
  };
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

/** Ids are stored as randomUUID() writes them (lower case); the contract accepts either case. */
function taskId(id: string): string {
  return id.toLowerCase();
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
    JSON.stringify(a.reminderOffsets) === JSON.stringify(b.reminderOffsets)
  );
}

/**
 * The caller's user id (requireUser), refused once that user's account has been deleted: tokens
 * are stateless and outlive the account by up to their TTL, and a task written with one then
 * would belong to nobody and never be purged.
 */
export function liveUser(store: TasksStore, ctx: HandlerContext): string {
  const { userId } = requireUser(ctx);
  if (store.isDeletedUser(userId)) {
    throw new ConnectError("the account of this token has been deleted", Code.Unauthenticated);
  }
  return userId;
}
