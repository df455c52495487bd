import { randomUUID } from "node:crypto";
import type { ServiceImpl } from "@connectrpc/connect";
import type { TaskInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { requireService } from "@taskmesh/platform";
import { canBeAssigned } from "./access.js";
import { toTask } from "./task-record.js";
import { checkTimestamp } from "./task-rules.js";
import { createdTask, digest, ms } from "./task-service.js";
import type { TaskServiceDeps } from "./task-service-deps.js";

/**
 * The mesh-only TaskInternalService: callers are services (a verified service token), and the
 * user id comes from the request because it comes from an event, not from an end user.
 */
export function taskInternalService(deps: TaskServiceDeps): ServiceImpl<typeof TaskInternalService> {
  const { store } = deps;
  const now = deps.clock ?? Date.now;
  return {
    /**
     * The next occurrence of a recurring task: a copy of the parent (title, notes, zone, rule,
     * reminders, priority) with the new due time, created once per idempotency_key and user. A repeat
     * returns the first occurrence with created=false. The parent must be that user's task.
     */
    async createOccurrence(req, ctx) {
      requireService(ctx);
      const { userId } = req;
      const parentId = req.parentTaskId.toLowerCase();
      // required by the contract, so present once validation passed
      const dueTime = checkTimestamp("due_time", ms(req.dueTime as NonNullable<typeof req.dueTime>));
      const result = store.create(
        userId,
        () => {
          const parent = store.get(userId, parentId);
          if (!parent) return undefined;
          return {
            title: parent.title,
            notes: parent.notes,
            dueTime,
            timeZone: parent.timeZone,
            recurrenceRule: parent.recurrenceRule,
            reminderOffsets: parent.reminderOffsets,
            parentTaskId: parent.id,
            priority: parent.priority,
            // The occurrence stays where its parent was: same project and labels, and a subtask of
            // the same task while that one exists.
            projectId: parent.projectId,
            labelIds: parent.labelIds,
            parentId: parent.parentId && store.get(userId, parent.parentId) ? parent.parentId : null,
            // Still assigned to the same member while they may be (owner or editor of the project).
            assigneeId:
              parent.assigneeId && canBeAssigned(store, parent.projectId, parent.assigneeId) ? parent.assigneeId : null,
          };
        },
        {
          id: randomUUID(),
          now: now(),
          maxTasks: deps.maxTasksPerUser,
          key: { scope: "occurrence", key: req.idempotencyKey, fingerprint: digest([parentId, dueTime]) },
        },
      );
      return { task: toTask(createdTask(result)), created: result.kind === "created" };
    },

    /**
     * Deletes all of a user's tasks and idempotency keys (account deletion). Repeating it deletes 0.
     * No per-task events: the user.deleted that caused it is the fact consumers act on.
     */
    async purgeUser(req, ctx) {
      requireService(ctx);
      return { deletedCount: BigInt(store.purgeUser(req.userId)) };
    },
  };
}
