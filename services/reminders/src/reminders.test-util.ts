import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type Envelope,
  EnvelopeSchema,
  TaskCompletedSchema,
  TaskCreatedSchema,
  TaskDeletedSchema,
  TaskUpdatedSchema,
  UserDeletedSchema,
} from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";

export interface TaskFields {
  id?: string;
  userId: string;
  title?: string;
  /** Epoch ms; omitted = no due time. */
  due?: number;
  offsets?: number[];
  timeZone?: string;
  version: number;
  status?: TaskStatus;
}

/** A Task as tasks carries it in its events. */
export function task(f: TaskFields): Task {
  return create(TaskSchema, {
    id: f.id ?? randomUUID(),
    userId: f.userId,
    title: f.title ?? "Water the plants",
    status: f.status ?? TaskStatus.OPEN,
    timeZone: f.timeZone ?? "Europe/Paris",
    ...(f.due !== undefined ? { dueTime: timestampFromMs(f.due) } : {}),
    reminderOffsets: (f.offsets ?? []).map((s) => create(DurationSchema, { seconds: BigInt(s) })),
    version: BigInt(f.version),
  });
}

function envelope(type: string, userId: string, aggregateId: string, payload: Envelope["payload"]): Envelope {
  return create(EnvelopeSchema, {
    id: randomUUID(),
    type,
    occurredAt: timestampFromMs(Date.now()),
    userId,
    aggregateId,
    payload,
  });
}

export const events = {
  created: (t: Task) =>
    envelope("task.created", t.userId, t.id, { case: "taskCreated", value: create(TaskCreatedSchema, { task: t }) }),
  updated: (t: Task, changedFields: string[] = ["due_time"]) =>
    envelope("task.updated", t.userId, t.id, {
      case: "taskUpdated",
      value: create(TaskUpdatedSchema, { task: t, changedFields }),
    }),
  completed: (t: Task) =>
    envelope("task.completed", t.userId, t.id, {
      case: "taskCompleted",
      value: create(TaskCompletedSchema, { task: { ...t, status: TaskStatus.COMPLETED } }),
    }),
  deleted: (t: Task, version: number) =>
    envelope("task.deleted", t.userId, t.id, {
      case: "taskDeleted",
      value: create(TaskDeletedSchema, { taskId: t.id, version: BigInt(version) }),
    }),
  userDeleted: (userId: string) =>
    envelope("user.deleted", userId, userId, { case: "userDeleted", value: create(UserDeletedSchema, { userId }) }),
};
