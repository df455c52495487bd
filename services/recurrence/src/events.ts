import type { ConsumerSpec } from "@taskmesh/platform";
import { STREAMS } from "@taskmesh/platform";

/**
 * What the recurrence service consumes (it publishes nothing: the occurrences it creates are
 * published by tasks as task.created).
 */
export const CONSUMERS = {
  /** task.completed → the next occurrence of a recurring task. */
  taskCompleted: {
    stream: STREAMS.TASKS,
    consumer: {
      durable: "recurrence-task-completed",
      filterSubject: "taskmesh.task.completed",
    },
  },
  /** user.deleted → this service's rows of that user are dropped (the account-deletion choreography). */
  userDeleted: {
    stream: STREAMS.USERS,
    consumer: {
      durable: "recurrence-user-deleted",
      filterSubject: "taskmesh.user.deleted",
    },
  },
} as const satisfies Record<string, { stream: unknown; consumer: Omit<ConsumerSpec, "stream"> }>;
