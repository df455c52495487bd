import { createHash } from "node:crypto";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import type { Task } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { type EventHandler, type GrpcClient, type Logger, TransientError } from "@taskmesh/platform";
import { nextOccurrence } from "./next-occurrence.js";
import type { OccurrencesStore, ProcessedOccurrence } from "./occurrences-store.js";

/** What `external` found out; `apply` records it. */
export type Decision =
  | { kind: "skip"; reason: string }
  | { kind: "occurrence"; occurrence: Omit<ProcessedOccurrence, "eventId"> };

export interface TaskCompletedDeps {
  store: OccurrencesStore;
  tasks: GrpcClient<typeof TaskInternalService>;
  logger: Logger;
  /** Deadline of one CreateOccurrence call. Default 5000 ms. */
  callTimeoutMs?: number;
}

/** gRPC codes worth another delivery: tasks is down, slow, or shutting a call down. */
const TRANSIENT_CODES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Canceled]);

/**
 * The idempotency key of the occurrence at `dueMs` following `parentTaskId`: the same completed
 * task and the same next instant always give the same key, so a redelivered event (or the same
 * completion published twice) creates the occurrence once.
 */
export function occurrenceKey(parentTaskId: string, dueMs: number): string {
  const digest = createHash("sha256").update(`${parentTaskId.toLowerCase()}\n${dueMs}`).digest("base64url");
  return `recurrence:${digest}`;
}

/**
 * task.completed → the next occurrence, created through tasks' CreateOccurrence.
 *
 * `external` works out the next due time and makes the call (idempotent on the key); `apply`
 * records the occurrence in processed_occurrences inside the inbox transaction, so the row
 * exists iff the event is marked handled. A crash between the call and the commit redelivers the
 * event, the call is repeated with the same key, and tasks answers with the occurrence it
 * already created (created=false).
 *
 * The series start (DTSTART, from which COUNT is counted) is carried in this service's own
 * database: a task that this service created continues the series recorded with it; any other
 * task (the first of a series, or one whose rule or zone the user has since changed) starts a
 * series at its own due time.
 */
export function taskCompletedHandler(deps: TaskCompletedDeps): EventHandler<Decision> {
  const { store, tasks, logger } = deps;
  return {
    async external(event: Envelope): Promise<Decision> {
      if (event.payload.case !== "taskCompleted")
        return { kind: "skip", reason: `not a task.completed (${event.type})` };
      const task = event.payload.value.task;
      if (!task) throw new Error("task.completed carries no task");
      const o = plan(task, event.userId, store);
      if ("skip" in o) return { kind: "skip", reason: o.skip };
      if (store.has(o.idempotencyKey)) return { kind: "skip", reason: "occurrence already created" };

      let res: Awaited<ReturnType<typeof tasks.createOccurrence>>;
      try {
        res = await tasks.createOccurrence(
          {
            userId: o.userId,
            parentTaskId: o.parentTaskId,
            dueTime: timestampFromMs(o.dueTime),
            idempotencyKey: o.idempotencyKey,
          },
          { timeoutMs: deps.callTimeoutMs ?? 5000 }, // trace context: from the active consumer span
        );
      } catch (err) {
        const e = ConnectError.from(err);
        if (TRANSIENT_CODES.has(e.code)) throw new TransientError(`tasks CreateOccurrence: ${e.message}`, { cause: e });
        // The parent (or the occurrence created earlier with this key) has been deleted since:
        // there is nothing to continue, and retrying cannot change that.
        if (e.code === Code.NotFound) return { kind: "skip", reason: `parent gone: ${e.rawMessage}` };
        throw e;
      }
      if (!res.task) throw new Error("CreateOccurrence answered without a task");
      return {
        kind: "occurrence",
        occurrence: { ...o, childTaskId: res.task.id, outcome: res.created ? "created" : "existed" },
      };
    },

    apply(event, ctx, decision) {
      const log = logger.child({ eventId: ctx.eventId, taskId: event.aggregateId });
      if (!decision || decision.kind === "skip") {
        log.debug({ reason: decision?.reason }, "no occurrence");
        return;
      }
      store.record({ ...decision.occurrence, eventId: ctx.eventId });
      log.info(
        {
          childTaskId: decision.occurrence.childTaskId,
          dueTime: new Date(decision.occurrence.dueTime).toISOString(),
          outcome: decision.occurrence.outcome,
        },
        "next occurrence created",
      );
    },
  };
}

/** An occurrence to create: what gets recorded, short of the answer of the call. */
type Plan = Omit<ProcessedOccurrence, "eventId" | "childTaskId" | "outcome">;

/** The next occurrence of a completed task, or why there is none. */
function plan(task: Task, eventUserId: string, store: OccurrencesStore): Plan | { skip: string } {
  if (task.recurrenceRule.trim() === "") return { skip: "not recurring" };
  if (!task.dueTime) return { skip: "recurring task without a due time" };
  const userId = task.userId || eventUserId;
  const dueMs = timestampMs(task.dueTime);
  const anchor = store.anchorOf(task.id, userId);
  const sameSeries = anchor && anchor.recurrenceRule === task.recurrenceRule && anchor.timeZone === task.timeZone;
  const seriesStart = sameSeries ? anchor.seriesStart : dueMs;
  const next = nextOccurrence({ startMs: seriesStart, timeZone: task.timeZone, rule: task.recurrenceRule }, dueMs);
  if (next === undefined) return { skip: "series ended" };
  return {
    idempotencyKey: occurrenceKey(task.id, next),
    userId,
    parentTaskId: task.id,
    dueTime: next,
    seriesStart,
    recurrenceRule: task.recurrenceRule,
    timeZone: task.timeZone,
  };
}
