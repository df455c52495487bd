import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { describe, expect, it } from "vitest";
import { verifyAcknowledged } from "./acknowledged.js";
import type { TaskModel, UnansweredCreate } from "./load.js";

const USER = randomUUID();

function model(over: Partial<TaskModel> & { title?: string; notes?: string; version?: number } = {}): TaskModel {
  const { title = `chaos ${randomUUID().slice(0, 8)}`, notes = "", version = 1, ...rest } = over;
  return {
    id: randomUUID(),
    userId: USER,
    vu: 1,
    recurring: false,
    known: { title, notes, completed: false, version },
    deleted: false,
    unsure: { titles: [], notes: [], completed: false, deleted: false },
    lastPhase: 3,
    ...rest,
  };
}

function task(m: TaskModel, over: Partial<Omit<Task, "$typeName">> = {}): Task {
  return create(TaskSchema, {
    id: m.id,
    userId: USER,
    title: m.known.title,
    notes: m.known.notes,
    status: m.known.completed ? TaskStatus.COMPLETED : TaskStatus.OPEN,
    version: BigInt(m.known.version),
    ...over,
  });
}

const unanswered = (title: string, keyed: boolean): UnansweredCreate => ({
  title,
  keyed,
  userId: USER,
  vu: 1,
  phase: 5,
  code: "UNAVAILABLE",
});

const holding = (...tasks: Task[]) => new Map([[USER, tasks]]);

describe("verifyAcknowledged", () => {
  it("finds nothing when every acknowledged state is there, and changes since are ones attempted", () => {
    const plain = model();
    const edited = model({ version: 2 });
    edited.unsure.notes.push("note sent without an answer");
    const maybeDone = model();
    maybeDone.unsure.completed = true;
    const gone = model({ deleted: true });
    const maybeGone = model();
    maybeGone.unsure.deleted = true;
    const occurrence = create(TaskSchema, { id: randomUUID(), title: "x", parentTaskId: plain.id });
    const report = verifyAcknowledged(
      [plain, edited, maybeDone, gone, maybeGone],
      [],
      holding(
        task(plain),
        task(edited, { notes: "note sent without an answer", version: 3n }),
        task(maybeDone, { status: TaskStatus.COMPLETED, version: 2n }),
        occurrence,
      ),
    );
    expect(report.findings).toEqual([]);
    expect(report.ambiguous).toEqual([]);
    expect(report.taskIds).toEqual([plain.id, edited.id, maybeDone.id, gone.id, maybeGone.id]);
  });

  it("reports an acknowledged task that is gone, never deleted, as lost in the phase of its last call", () => {
    const m = model();
    expect(verifyAcknowledged([m], [], holding()).findings).toEqual([
      { kind: "lost", taskId: m.id, phase: 3, message: "acknowledged (version 1) but gone, and never deleted" },
    ]);
  });

  it("reports a task whose deletion was acknowledged and that is back as lost", () => {
    const m = model({ deleted: true });
    expect(verifyAcknowledged([m], [], holding(task(m))).findings.map((f) => f.message)).toEqual([
      "DeleteTask was acknowledged, yet the task is back",
    ]);
  });

  it("reports an acknowledged completion or update undone as lost", () => {
    const done = model({ version: 2 });
    done.known.completed = true;
    const updated = model({ version: 4, notes: "acknowledged notes" });
    const report = verifyAcknowledged(
      [done, updated],
      [],
      holding(task(done, { status: TaskStatus.OPEN }), task(updated, { notes: "older notes", version: 3n })),
    );
    expect(report.findings.map((f) => [f.taskId, f.message])).toEqual([
      [done.id, "CompleteTask was acknowledged, yet the task is open"],
      [done.id, "same version 2 as acknowledged, different fields"],
      [updated.id, "version 3, but version 4 was acknowledged"],
    ]);
  });

  it("reports a change nobody attempted as lost", () => {
    const m = model({ notes: "mine" });
    const report = verifyAcknowledged([m], [], holding(task(m, { notes: "someone else's", version: 2n })));
    expect(report.findings.map((f) => f.message)).toEqual([
      `notes "someone else's" are neither the acknowledged ones nor ones attempted since`,
    ]);
  });

  it("reports a failed create whose task exists as ambiguous, not as a defect, and checks its task", () => {
    const id = randomUUID();
    const report = verifyAcknowledged(
      [],
      [unanswered("chaos v1 feedbeef", false), unanswered("chaos v1 notthere", true)],
      holding(create(TaskSchema, { id, title: "chaos v1 feedbeef", version: 1n })),
    );
    expect(report.findings).toEqual([]);
    expect(report.ambiguous).toEqual([
      expect.objectContaining({ taskId: id, keyed: false, title: "chaos v1 feedbeef" }),
    ]);
    expect(report.taskIds).toEqual([id]);
  });

  it("reports two tasks made by one create, and a task no create explains, as doubled", () => {
    const m = model({ title: "chaos v1 acked" });
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const report = verifyAcknowledged(
      [m],
      [unanswered("chaos v1 retried", true)],
      holding(
        task(m),
        create(TaskSchema, { id: a, title: "chaos v1 retried" }),
        create(TaskSchema, { id: b, title: "chaos v1 retried" }),
        create(TaskSchema, { id: c, title: "chaos v1 acked" }),
      ),
    );
    expect(report.findings).toEqual([
      {
        kind: "doubled",
        taskId: b,
        phase: 5,
        message: "one CreateTask with an idempotency key (failed UNAVAILABLE) made 2 tasks",
      },
      {
        kind: "doubled",
        taskId: c,
        phase: 3,
        message: `a second task titled "chaos v1 acked" next to the acknowledged ${m.id}`,
      },
    ]);
    expect(report.taskIds).toEqual([m.id, a, b, c]);
  });
});
