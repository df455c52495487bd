import { create } from "@bufbuild/protobuf";
import {
  type Envelope,
  LabelCreatedSchema,
  LabelDeletedSchema,
  LabelUpdatedSchema,
  ProjectCreatedSchema,
  ProjectDeletedSchema,
  ProjectMemberAddedSchema,
  ProjectMemberRemovedSchema,
  ProjectMemberUpdatedSchema,
  ProjectUpdatedSchema,
  TaskCompletedSchema,
  TaskCreatedSchema,
  TaskDeletedSchema,
  TaskUpdatedSchema,
} from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import {
  type ConsumerDeclarations,
  type Logger,
  newEvent,
  STREAMS,
  type StreamSpec,
  userDeletedConsumer,
} from "@taskmesh/platform";
import {
  type LabelRecord,
  type MemberRecord,
  type ProjectRecord,
  toLabel,
  toMember,
  toProject,
} from "./project-record.js";
import { type TaskFields, type TaskRecord, toTask } from "./task-record.js";

/**
 * What the tasks service publishes and consumes.
 *
 * Publishes to the TASKS stream, each event through the outbox in the transaction of the change
 * (TasksStore), each carrying the whole Task so that no consumer calls back to read it:
 * - `task.created`   (TaskCreated: the task; also for occurrences made by CreateOccurrence)
 * - `task.updated`   (TaskUpdated: the task after the change + changed_fields); also for ReopenTask,
 *   with changed_fields ["status", "complete_time"]: consumers that fold the whole task (reminders,
 *   analytics) see it open again without knowing a new event type
 * - `task.completed` (TaskCompleted: the task as completed)
 * - `task.deleted`   (TaskDeleted: task_id + version, see taskDeleted); also for each task of a
 *   deleted project and each subtask of a deleted task, before the deletion that caused it
 * - `project.created` / `project.updated` / `project.deleted` (none for the Inbox, which every
 *   user has implicitly: it is made on first need, or by migration 7 for users with tasks)
 * - `project.member_added` / `project.member_updated` / `project.member_removed` (sharing; the
 *   envelope's user_id is the project owner's, so the owner's audit log records them)
 * - `label.created` / `label.updated` (a rename: one event, tasks carry label ids) / `label.deleted`
 *   (the label leaves every task without a task.updated per task)
 * Tasks carry project_id, label_ids and parent_id (task.proto), so task events say where a task is.
 * A repeat that changes nothing (same idempotency key, completing a completed task, reopening an
 * open one, an update to
 * the same values) writes no event. PurgeUser writes none either: the user.deleted that caused it
 * is the fact every consumer acts on.
 *
 * Consumes `user.deleted` from the USERS stream (durable `tasks-user-deleted`): the user's tasks
 * and idempotency keys are deleted in the transaction that records the event in the inbox.
 */
export const PUBLISHES: readonly StreamSpec[] = [STREAMS.TASKS];

export function projectCreated(p: ProjectRecord): Envelope {
  return newEvent({
    userId: p.userId,
    aggregateId: p.id,
    occurredAt: new Date(p.createTime),
    payload: { case: "projectCreated", value: create(ProjectCreatedSchema, { project: toProject(p) }) },
  });
}

export function projectUpdated(p: ProjectRecord, changedFields: string[]): Envelope {
  return newEvent({
    userId: p.userId,
    aggregateId: p.id,
    occurredAt: new Date(p.updateTime),
    payload: { case: "projectUpdated", value: create(ProjectUpdatedSchema, { project: toProject(p), changedFields }) },
  });
}

/** Version = the project's last version + 1, as for taskDeleted. */
export function projectDeleted(p: ProjectRecord, at: number): Envelope {
  return newEvent({
    userId: p.userId,
    aggregateId: p.id,
    occurredAt: new Date(at),
    payload: {
      case: "projectDeleted",
      value: create(ProjectDeletedSchema, { projectId: p.id, version: BigInt(p.version + 1) }),
    },
  });
}

export function labelCreated(l: LabelRecord): Envelope {
  return newEvent({
    userId: l.userId,
    aggregateId: l.id,
    occurredAt: new Date(l.createTime),
    payload: { case: "labelCreated", value: create(LabelCreatedSchema, { label: toLabel(l) }) },
  });
}

export function labelUpdated(l: LabelRecord): Envelope {
  return newEvent({
    userId: l.userId,
    aggregateId: l.id,
    occurredAt: new Date(l.updateTime),
    payload: { case: "labelUpdated", value: create(LabelUpdatedSchema, { label: toLabel(l) }) },
  });
}

export function labelDeleted(l: LabelRecord, at: number): Envelope {
  return newEvent({
    userId: l.userId,
    aggregateId: l.id,
    occurredAt: new Date(at),
    payload: { case: "labelDeleted", value: create(LabelDeletedSchema, { labelId: l.id }) },
  });
}

/** A member joined the owner's project (accepted an invitation); user_id is the owner's, for their audit log. */
export function memberAdded(ownerId: string, m: MemberRecord, at: number): Envelope {
  return newEvent({
    userId: ownerId,
    aggregateId: m.projectId,
    occurredAt: new Date(at),
    payload: { case: "projectMemberAdded", value: create(ProjectMemberAddedSchema, { member: toMember(m) }) },
  });
}

export function memberUpdated(ownerId: string, m: MemberRecord, at: number): Envelope {
  return newEvent({
    userId: ownerId,
    aggregateId: m.projectId,
    occurredAt: new Date(at),
    payload: { case: "projectMemberUpdated", value: create(ProjectMemberUpdatedSchema, { member: toMember(m) }) },
  });
}

export function memberRemoved(ownerId: string, m: MemberRecord, left: boolean, at: number): Envelope {
  return newEvent({
    userId: ownerId,
    aggregateId: m.projectId,
    occurredAt: new Date(at),
    payload: {
      case: "projectMemberRemoved",
      value: create(ProjectMemberRemovedSchema, { projectId: m.projectId, userId: m.userId, left }),
    },
  });
}

/** `forgetUser` drops a user's tasks and idempotency keys and remembers the account is gone (TasksStore). */
export function consumers(deps: { forgetUser: (userId: string) => number; logger: Logger }) {
  return {
    userDeleted: userDeletedConsumer("tasks", deps.forgetUser, deps.logger),
  } satisfies ConsumerDeclarations;
}

export function taskCreated(task: TaskRecord): Envelope {
  return taskEvent(task, task.createTime, {
    case: "taskCreated",
    value: create(TaskCreatedSchema, { task: toTask(task) }),
  });
}

export function taskUpdated(task: TaskRecord, changedFields: string[]): Envelope {
  return taskEvent(task, task.updateTime, {
    case: "taskUpdated",
    value: create(TaskUpdatedSchema, { task: toTask(task), changedFields }),
  });
}

export function taskCompleted(task: TaskRecord): Envelope {
  return taskEvent(task, task.completeTime ?? task.updateTime, {
    case: "taskCompleted",
    value: create(TaskCompletedSchema, { task: toTask(task) }),
  });
}

/**
 * The deletion of `task` (as it was before). Its version is the task's last version + 1: the
 * deletion is a change like any other, so a consumer that keeps the highest version it has seen
 * of a task (and ignores anything not newer) treats it as newer than every update.
 */
export function taskDeleted(task: TaskRecord, at: number): Envelope {
  return taskEvent(task, at, {
    case: "taskDeleted",
    value: create(TaskDeletedSchema, { taskId: task.id, version: BigInt(task.version + 1) }),
  });
}

function taskEvent(task: TaskRecord, atMs: number, payload: Parameters<typeof newEvent>[0]["payload"]): Envelope {
  return newEvent({ userId: task.userId, aggregateId: task.id, occurredAt: new Date(atMs), payload });
}

/** A completed task made open again (ReopenTask): a task.updated naming what the reopen changed. */
export function taskReopened(task: TaskRecord): Envelope {
  return taskUpdated(task, ["status", "complete_time"]);
}

/** The contract's names (task.proto) of the fields that differ between `a` and `b`, in field order. */
export function changedFields(a: TaskFields, b: TaskFields): string[] {
  const out: string[] = [];
  if (a.title !== b.title) out.push("title");
  if (a.notes !== b.notes) out.push("notes");
  if (a.dueTime !== b.dueTime) out.push("due_time");
  if (a.timeZone !== b.timeZone) out.push("time_zone");
  if (a.recurrenceRule !== b.recurrenceRule) out.push("recurrence_rule");
  if (JSON.stringify(a.reminderOffsets) !== JSON.stringify(b.reminderOffsets)) out.push("reminder_offsets");
  if (a.priority !== b.priority) out.push("priority");
  if (a.projectId !== b.projectId) out.push("project_id");
  if (a.labelIds.join() !== b.labelIds.join()) out.push("label_ids");
  if (a.parentId !== b.parentId) out.push("parent_id");
  if (a.assigneeId !== b.assigneeId) out.push("assignee_id");
  return out;
}
