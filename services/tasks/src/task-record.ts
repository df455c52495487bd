import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Priority, type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";

export type TaskStatusName = "open" | "completed";

/** Stored priority: the Priority enum's number, P1 = 1 .. P4 = 4. */
export type PriorityLevel = 1 | 2 | 3 | 4;

/** The default priority, also what PRIORITY_UNSPECIFIED in a create or update means. */
export const DEFAULT_PRIORITY: PriorityLevel = 4;

/** A request's Priority as stored: UNSPECIFIED → P4. The contract allows defined values only. */
export function priorityLevel(p: Priority): PriorityLevel {
  return p === Priority.UNSPECIFIED ? DEFAULT_PRIORITY : (p as PriorityLevel);
}

/** A task as stored. Times are epoch milliseconds. */
export interface TaskRecord {
  id: string;
  userId: string;
  title: string;
  notes: string;
  status: TaskStatusName;
  dueTime: number | null;
  timeZone: string;
  recurrenceRule: string;
  /** Seconds before dueTime, in the order given. */
  reminderOffsets: number[];
  parentTaskId: string | null;
  /** The project the task is in (every task has one). */
  projectId: string;
  /** Label ids, sorted. */
  labelIds: string[];
  /** The task this one is a subtask of (one level deep), or null for a top-level task. */
  parentId: string | null;
  /** Manual order within the project among siblings (fractional-indexing key). */
  rank: string;
  /** 1 (P1, highest) .. 4 (P4, the default); see Priority in task.proto. */
  priority: PriorityLevel;
  /** The project member the task is assigned to (owner or editor), or null. */
  assigneeId: string | null;
  createTime: number;
  updateTime: number;
  completeTime: number | null;
  version: number;
}

/** What a caller sets on create and update. */
export type TaskFields = Pick<
  TaskRecord,
  | "title"
  | "notes"
  | "dueTime"
  | "timeZone"
  | "recurrenceRule"
  | "reminderOffsets"
  | "parentTaskId"
  | "priority"
  | "projectId"
  | "labelIds"
  | "parentId"
  | "assigneeId"
>;

/** The stored task as the contract's Task message. */
export function toTask(r: TaskRecord): Task {
  return create(TaskSchema, {
    id: r.id,
    userId: r.userId,
    title: r.title,
    notes: r.notes,
    status: r.status === "completed" ? TaskStatus.COMPLETED : TaskStatus.OPEN,
    ...(r.dueTime !== null ? { dueTime: timestampFromMs(r.dueTime) } : {}),
    timeZone: r.timeZone,
    recurrenceRule: r.recurrenceRule,
    reminderOffsets: r.reminderOffsets.map((s) => durationFromMs(s * 1000)),
    parentTaskId: r.parentTaskId ?? "",
    createTime: timestampFromMs(r.createTime),
    updateTime: timestampFromMs(r.updateTime),
    ...(r.completeTime !== null ? { completeTime: timestampFromMs(r.completeTime) } : {}),
    version: BigInt(r.version),
    priority: r.priority as number as Priority,
    projectId: r.projectId,
    labelIds: r.labelIds,
    parentId: r.parentId ?? "",
    rank: r.rank,
    assigneeId: r.assigneeId ?? "",
  });
}
