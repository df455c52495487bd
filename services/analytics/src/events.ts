import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AuditAction } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import type { ClientInfo, Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { Priority, type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import {
  type ConsumerDeclarations,
  type ConsumerSpec,
  deletedUserId,
  type Logger,
  STREAMS,
  type StreamSpec,
} from "@taskmesh/platform";
import type { AnalyticsStore, FoldResult, TaskFacts } from "./analytics-store.js";

/**
 * What analytics consumes (it publishes nothing). One consumer per stream, each over the whole
 * stream (nats-server 2.9 allows one filter subject per consumer; everything in these two streams
 * is folded or deliberately skipped):
 * - TASKS: task.created / task.updated / task.completed (each carries the whole Task, its project
 *   and label ids too) and task.deleted (task id + version) → the per-task rows, stats (per
 *   priority, project and label) and the search index; label.deleted drops the label from every
 *   task (no task event is sent per task); project.created/deleted and label.created record whose
 *   ids they are (SearchTasks' filters answer NOT_FOUND for anyone else's); names are not kept
 *   (counts are by id; the client names them from ListProjects/ListLabels);
 * - USERS: user.registered (the time zone streaks are counted in), user.deleted (drop the user,
 *   audit log included) and the audit events (user.logged_in, user.login_failed, …) → the audit
 *   log; task.deleted is audited too.
 * REMINDERS and NOTIFICATIONS carry nothing the read models show, so they are not consumed.
 */
export const ANALYTICS_STREAMS = [STREAMS.TASKS, STREAMS.USERS] as const satisfies readonly StreamSpec[];

/**
 * The durable consumer of `stream` for the database of `generation`. The name carries the
 * database's generation: a new database (rebuilt, or a lost file) reads every stream from the
 * start through consumers of its own, and the position of one database is never mistaken for
 * another's.
 */
export function consumerFor(stream: StreamSpec, generation: string): Omit<ConsumerSpec, "stream"> {
  return { durable: `analytics-${generation}-${stream.name.toLowerCase()}` };
}

/** What analytics publishes: nothing. */
export const PUBLISHES = [] as const;

/**
 * One consumer per stream, keyed by stream name, each folding every event in stream order
 * (user.deleted included: a read model applies it in order with the user's other events, so
 * it is part of the fold rather than a consumer of its own).
 */
export function consumers(store: AnalyticsStore, logger: Logger): ConsumerDeclarations {
  const handler = foldHandler(store, logger);
  return Object.fromEntries(
    ANALYTICS_STREAMS.map((stream) => [
      stream.name,
      // A read model that publishes nothing: visible one fsync sooner, acked once on disk.
      { stream, consumer: consumerFor(stream, store.generation), handler, syncBeforeAck: true },
    ]),
  );
}

/** Epoch ms of the event (0 when the producer left occurred_at out). */
export function eventMs(event: Envelope): number {
  return event.occurredAt ? timestampMs(event.occurredAt) : 0;
}

function taskFacts(task: Task, event: Envelope): TaskFacts {
  const completed = task.status === TaskStatus.COMPLETED;
  return {
    taskId: task.id || event.aggregateId,
    userId: task.userId || event.userId,
    title: task.title,
    notes: task.notes,
    status: completed ? "completed" : "open",
    dueMs: task.dueTime ? timestampMs(task.dueTime) : undefined,
    // complete_time is when the user completed it; the event time stands in if it is missing.
    completedMs: completed ? (task.completeTime ? timestampMs(task.completeTime) : eventMs(event)) : undefined,
    version: Number(task.version),
    // UNSPECIFIED (an event from before priorities existed) is P4, as tasks stores it.
    priority: task.priority === Priority.UNSPECIFIED ? 4 : task.priority,
    projectId: task.projectId,
    labelIds: task.labelIds,
  };
}

/**
 * Folds one event into the read models. Synchronous: it runs inside the inbox transaction of the
 * consumer (or of the rebuild), so the event id and its effect commit together. Events this
 * service does not fold return "ignored" (and are acked like the others).
 */
export function foldEvent(store: AnalyticsStore, event: Envelope): FoldResult | "ignored" {
  const at = eventMs(event);
  const p = event.payload;
  switch (p.case) {
    case "taskCreated":
    case "taskUpdated":
    case "taskCompleted":
      if (!p.value.task) throw new Error(`${event.type} without a task`);
      return store.upsertTask(taskFacts(p.value.task, event), at);
    case "taskDeleted": {
      const taskId = p.value.taskId || event.aggregateId;
      const result = store.deleteTask(taskId, event.userId, Number(p.value.version), at);
      if (result !== "user-deleted") store.appendAudit(audit(event, AuditAction.TASK_DELETED, undefined, "", taskId));
      return result;
    }
    case "userLoggedIn":
      return store.appendAudit(audit(event, AuditAction.LOGIN, p.value.client, p.value.sessionId));
    case "userLoginFailed":
      return store.appendAudit(audit(event, AuditAction.LOGIN_FAILED, p.value.client));
    case "userLoggedOut":
      return store.appendAudit(audit(event, AuditAction.LOGOUT, p.value.client, p.value.sessionId));
    case "userSessionRevoked":
      return store.appendAudit(audit(event, AuditAction.SESSION_REVOKED, p.value.client, p.value.sessionId));
    case "userRefreshReused":
      return store.appendAudit(audit(event, AuditAction.REFRESH_TOKEN_REUSED, p.value.client, p.value.sessionId));
    case "userPreferencesUpdated":
      return store.appendAudit(audit(event, AuditAction.PREFERENCES_CHANGED, p.value.client));
    case "userDeletionRequested":
      return store.appendAudit(
        audit(event, AuditAction.ACCOUNT_DELETION_REQUESTED, p.value.client, "", p.value.deletionId),
      );
    // Sharing, in the owner's audit log (the envelope's user is the project's owner).
    case "projectMemberAdded":
      return store.appendAudit(audit(event, AuditAction.PROJECT_SHARED, undefined, "", event.aggregateId));
    case "projectMemberUpdated":
      return store.appendAudit(audit(event, AuditAction.PROJECT_MEMBER_ROLE_CHANGED, undefined, "", event.aggregateId));
    case "projectMemberRemoved":
      return store.appendAudit(audit(event, AuditAction.PROJECT_UNSHARED, undefined, "", event.aggregateId));
    case "projectCreated":
      return store.recordOwner("project", p.value.project?.id || event.aggregateId, event.userId, at);
    case "labelCreated":
      return store.recordOwner("label", p.value.label?.id || event.aggregateId, event.userId, at);
    case "projectDeleted":
      return store.dropProject(p.value.projectId || event.aggregateId, event.userId, at);
    case "labelDeleted":
      return store.deleteLabel(p.value.labelId || event.aggregateId, event.userId, eventMs(event));
    case "userRegistered":
      return store.registerUser(p.value.userId || event.userId, p.value.timeZone, at);
    case "userDeleted":
      store.purgeUser(deletedUserId(event), at);
      return "applied";
    default:
      return "ignored";
  }
}

/** The audit entry of `event`: its id (idempotent append), user, time and client, where known. */
function audit(
  event: Envelope,
  action: AuditAction,
  client: ClientInfo | undefined,
  sessionId = "",
  resourceId = "",
): Parameters<AnalyticsStore["appendAudit"]>[0] {
  return {
    eventId: event.id,
    userId: event.userId,
    action,
    occurredMs: eventMs(event),
    ipAddress: client?.ipAddress ?? "",
    userAgent: client?.userAgent ?? "",
    sessionId,
    resourceId,
  };
}

/** The consumer handler: fold, and log what was skipped. */
export function foldHandler(store: AnalyticsStore, logger: Logger): (event: Envelope) => void {
  return (event) => {
    const result = foldEvent(store, event);
    if (result !== "applied") logger.debug({ eventId: event.id, type: event.type, result }, "event not folded");
  };
}
