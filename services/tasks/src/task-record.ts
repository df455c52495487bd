import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskRecord } from "./tasks-store.js";

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
