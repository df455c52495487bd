import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";

export type TaskStatusName = "open" | "completed";

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
  createTime: number;
  updateTime: number;
  completeTime: number | null;
  version: number;
}

/** What a caller sets on create and update. */
export type TaskFields = Pick<
  TaskRecord,
  "title" | "notes" | "dueTime" | "timeZone" | "recurrenceRule" | "reminderOffsets" | "parentTaskId"
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
  });
}
