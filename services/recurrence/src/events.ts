import { type ConsumerDeclaration, type ConsumerDeclarations, STREAMS, userDeletedConsumer } from "@taskmesh/platform";
import { type Decision, type TaskCompletedDeps, taskCompletedHandler } from "./task-completed.js";

/**
 * What the recurrence service consumes (it publishes nothing: the occurrences it creates are
 * published by tasks as task.created):
 * - `task.completed` (TASKS, durable `recurrence-task-completed`) → the next occurrence of a
 *   recurring task, created through tasks' CreateOccurrence with an idempotency key;
 * - `user.deleted` (USERS, durable `recurrence-user-deleted`) → this service's rows of that user
 *   are dropped (the account-deletion choreography).
 */
export const PUBLISHES = [] as const;

export function consumers(deps: TaskCompletedDeps) {
  const taskCompleted: ConsumerDeclaration<Decision> = {
    stream: STREAMS.TASKS,
    consumer: { durable: "recurrence-task-completed", filterSubject: "taskmesh.task.completed" },
    handler: taskCompletedHandler(deps),
  };
  return {
    taskCompleted,
    userDeleted: userDeletedConsumer("recurrence", (userId) => deps.store.purgeUser(userId), deps.logger),
  } satisfies ConsumerDeclarations;
}
