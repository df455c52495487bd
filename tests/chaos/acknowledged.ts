// No acknowledged write lost: the tasks the load was told it created, updated, completed or
// deleted, against what the tasks service holds at the end. Pure, so a test can plant a loss.
//
// The rule for each task the load created (CreateTask answered OK):
//   - DeleteTask acknowledged → it must be gone (a deleted task that reappears lost the delete);
//   - otherwise it must exist, unless a delete was attempted without an answer (either is fine);
//   - its version is at least the last one an answer carried, it is completed if a completion was
//     acknowledged, and any change since the last answer is one the load attempted without
//     learning the outcome (a title or notes it sent, a completion it asked for).
// Tasks nobody acknowledged: a failed CreateTask whose task exists is an ambiguous outcome (the
// service did the work, the answer was lost), reported apart and not a defect; more than one task
// for one create, or a task no create can explain, is a write doubled.
import { type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskModel, UnansweredCreate } from "./load.js";

export interface Finding {
  kind: "lost" | "doubled";
  taskId: string;
  /** The load phase the finding belongs to (that of the last call about the task). */
  phase: number;
  message: string;
}

export interface Ambiguous extends UnansweredCreate {
  taskId: string;
}

export interface AcknowledgedReport {
  findings: Finding[];
  /** Failed creates whose task exists after all. */
  ambiguous: Ambiguous[];
  /** Every task id the delivery checker should look at: the acknowledged ones and the ambiguous ones. */
  taskIds: string[];
}

/**
 * `actual`: every task of the load's users the service holds now, by user id (occurrences
 * included; they are recurrence's and are left to the delivery checker).
 */
export function verifyAcknowledged(
  models: readonly TaskModel[],
  unanswered: readonly UnansweredCreate[],
  actual: ReadonlyMap<string, readonly Task[]>,
): AcknowledgedReport {
  const findings: Finding[] = [];
  const byId = new Map<string, Task>();
  for (const tasks of actual.values()) for (const t of tasks) byId.set(t.id, t);
  const lost = (m: TaskModel, message: string) =>
    findings.push({ kind: "lost", taskId: m.id, phase: m.lastPhase, message });

  for (const m of models) {
    const t = byId.get(m.id);
    if (m.deleted) {
      if (t) lost(m, "DeleteTask was acknowledged, yet the task is back");
      continue;
    }
    if (!t) {
      if (!m.unsure.deleted) lost(m, `acknowledged (version ${m.known.version}) but gone, and never deleted`);
      continue;
    }
    const version = Number(t.version);
    const completed = t.status === TaskStatus.COMPLETED;
    if (version < m.known.version) lost(m, `version ${version}, but version ${m.known.version} was acknowledged`);
    if (m.known.completed && !completed) lost(m, "CompleteTask was acknowledged, yet the task is open");
    if (version === m.known.version) {
      if (t.title !== m.known.title || t.notes !== m.known.notes || completed !== m.known.completed)
        lost(m, `same version ${version} as acknowledged, different fields`);
    } else if (version > m.known.version) {
      if (t.title !== m.known.title && !m.unsure.titles.includes(t.title))
        lost(m, `title "${t.title}" is neither the acknowledged one nor one attempted since`);
      if (t.notes !== m.known.notes && !m.unsure.notes.includes(t.notes))
        lost(m, `notes "${t.notes}" are neither the acknowledged ones nor ones attempted since`);
      if (completed && !m.known.completed && !m.unsure.completed)
        lost(m, "completed, but no completion was attempted since the last answer");
    }
  }

  // Root tasks (not occurrences) no acknowledged create explains.
  const modelled = new Set(models.map((m) => m.id));
  const ambiguous: Ambiguous[] = [];
  const explained = new Set<string>();
  for (const u of unanswered) {
    const found = (actual.get(u.userId) ?? []).filter(
      (t) => !t.parentTaskId && !modelled.has(t.id) && t.title === u.title,
    );
    for (const t of found) explained.add(t.id);
    const [first, ...rest] = found;
    if (first) ambiguous.push({ ...u, taskId: first.id });
    for (const t of rest)
      findings.push({
        kind: "doubled",
        taskId: t.id,
        phase: u.phase,
        message: `one CreateTask${u.keyed ? " with an idempotency key" : ""} (failed ${u.code}) made ${found.length} tasks`,
      });
  }
  for (const [userId, tasks] of actual)
    for (const t of tasks) {
      if (t.parentTaskId || modelled.has(t.id) || explained.has(t.id)) continue;
      // An acknowledged create retried with its key that made a second task: same title as a modelled one.
      const twin = models.find((m) => m.userId === userId && m.known.title === t.title);
      findings.push({
        kind: "doubled",
        taskId: t.id,
        phase: twin?.lastPhase ?? 0,
        message: twin
          ? `a second task titled "${t.title}" next to the acknowledged ${twin.id}`
          : `task "${t.title}" that no create of the load can explain`,
      });
    }

  const taskIds = [...models.map((m) => m.id), ...ambiguous.map((a) => a.taskId)];
  for (const f of findings) if (f.kind === "doubled" && !taskIds.includes(f.taskId)) taskIds.push(f.taskId);
  return { findings, ambiguous, taskIds };
}
