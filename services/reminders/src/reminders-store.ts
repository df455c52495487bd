import { type Db, inboxMigration, type Migration, outboxMigration, outboxStreamSeqMigration } from "@taskmesh/platform";
import type { Statement } from "better-sqlite3";
import type { PlannedTimer, TaskSnapshot, TimerKind } from "./timers.js";

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "tasks and timers",
    sql: `
      -- The latest version of each task this service has heard of. Rows of completed and deleted
      -- tasks stay as tombstones, so an older event delivered late (a redelivery, or another
      -- consumer's order) cannot bring their timers back.
      CREATE TABLE tasks (
        task_id    TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL,
        version    INTEGER NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('open', 'completed', 'deleted')),
        title      TEXT NOT NULL,
        time_zone  TEXT NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX tasks_by_user ON tasks (user_id);

      -- One row per timer. A timer is identified by (task, kind, offset, due time); its fire time
      -- follows from them. fired_at is the fire-once marker, set in the transaction that writes
      -- the event to the outbox. Fired rows are kept while the task is open so that editing the
      -- task (a new title, another reminder) does not fire them a second time.
      CREATE TABLE timers (
        id              INTEGER PRIMARY KEY,
        task_id         TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
        user_id         TEXT NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('reminder', 'due')),
        offset_seconds  INTEGER NOT NULL,
        due_time        INTEGER NOT NULL,  -- epoch ms
        fire_time       INTEGER NOT NULL,  -- epoch ms: due_time - offset_seconds * 1000
        fired_at        INTEGER,           -- epoch ms by the service's clock; NULL while pending
        event_id        TEXT,              -- the reminder.due / task.due it fired as
        UNIQUE (task_id, kind, offset_seconds, due_time)
      ) STRICT;
      CREATE INDEX timers_pending ON timers (fire_time) WHERE fired_at IS NULL;
      CREATE INDEX timers_by_user ON timers (user_id, fire_time);

      -- Users whose account was deleted (user.deleted): task events about them that arrive
      -- afterwards (TASKS and USERS are separate streams read by separate consumers) are ignored.
      CREATE TABLE deleted_users (
        user_id     TEXT PRIMARY KEY,
        deleted_at  TEXT NOT NULL
      ) STRICT, WITHOUT ROWID;
    `,
  },
  inboxMigration(2),
  outboxMigration(3),
  {
    version: 4,
    name: "trace context of timers",
    // The W3C traceparent of the task event that (re)scheduled the timer (the consumer span that
    // applied it). The timer fires in that trace, however much later: a reminder belongs to the
    // request that set it. NULL for timers stored before this migration or without a trace.
    sql: "ALTER TABLE timers ADD COLUMN traceparent TEXT;",
  },
  {
    version: 5,
    name: "fired timers by due time",
    // For pruning fired timers past the retention horizon without a table scan.
    sql: "CREATE INDEX timers_fired ON timers (due_time) WHERE fired_at IS NOT NULL;",
  },
  outboxStreamSeqMigration(6),
];

export type TaskState = "open" | "completed" | "deleted";

export interface KnownTask {
  userId: string;
  version: number;
  state: TaskState;
}

/** A pending timer, as ListSchedule shows it. */
export interface ScheduledTimer {
  id: number;
  taskId: string;
  userId: string;
  kind: TimerKind;
  offsetSeconds: number;
  dueTime: number;
  fireTime: number;
}

/** A timer that has come due, with what its event carries. */
export interface DueTimer extends ScheduledTimer {
  title: string;
  timeZone: string;
  /** W3C traceparent stored when the timer was (re)scheduled, null without one. */
  traceparent: string | null;
}

const TIMER_COLUMNS = `t.id, t.task_id AS taskId, t.user_id AS userId, t.kind, t.offset_seconds AS offsetSeconds,
  t.due_time AS dueTime, t.fire_time AS fireTime`;

/**
 * SQL for the reminders service's database: what it knows of each task and the task's timers.
 * Every method that writes is meant to run inside a transaction (the consumer's inbox transaction
 * or the scheduler's firing transaction).
 */
export class RemindersStore {
  readonly #known: Statement<[string]>;
  readonly #upsertTask: Statement;
  readonly #deletePending: Statement<[string]>;
  readonly #deleteAll: Statement<[string]>;
  readonly #insertTimer: Statement;
  readonly #pendingFor: Statement<[string]>;
  readonly #due: Statement<[number, number]>;
  readonly #markFired: Statement<[number, string, number]>;
  readonly #next: Statement<[]>;
  readonly #pendingCount: Statement<[]>;
  readonly #userDeleted: Statement<[string]>;
  readonly #markUserDeleted: Statement<[string, string]>;
  readonly #purgeTimers: Statement<[string]>;
  readonly #purgeTasks: Statement<[string]>;
  readonly #pruneFired: Statement<[number, number]>;

  constructor(readonly db: Db) {
    this.#known = db.prepare("SELECT user_id AS userId, version, state FROM tasks WHERE task_id = ?");
    this.#upsertTask = db.prepare(`
      INSERT INTO tasks (task_id, user_id, version, state, title, time_zone)
      VALUES (@taskId, @userId, @version, @state, @title, @timeZone)
      ON CONFLICT (task_id) DO UPDATE SET version = excluded.version, state = excluded.state,
        title = excluded.title, time_zone = excluded.time_zone`);
    this.#deletePending = db.prepare("DELETE FROM timers WHERE task_id = ? AND fired_at IS NULL");
    this.#deleteAll = db.prepare("DELETE FROM timers WHERE task_id = ?");
    this.#pruneFired = db.prepare(
      "DELETE FROM timers WHERE id IN (SELECT id FROM timers WHERE fired_at IS NOT NULL AND due_time < ? LIMIT ?)",
    );
    // A conflict means this very timer (same task, kind, offset and due time) exists already:
    // fired, since the pending ones were just deleted. It must not fire again.
    this.#insertTimer = db.prepare(`
      INSERT INTO timers (task_id, user_id, kind, offset_seconds, due_time, fire_time, traceparent)
      VALUES (@taskId, @userId, @kind, @offsetSeconds, @dueTime, @fireTime, @traceparent)
      ON CONFLICT DO NOTHING`);
    this.#pendingFor = db.prepare(
      `SELECT ${TIMER_COLUMNS} FROM timers t WHERE t.user_id = ? AND t.fired_at IS NULL ORDER BY t.fire_time, t.id`,
    );
    this.#due = db.prepare(`
      SELECT ${TIMER_COLUMNS}, k.title, k.time_zone AS timeZone, t.traceparent
      FROM timers t JOIN tasks k ON k.task_id = t.task_id
      WHERE t.fired_at IS NULL AND t.fire_time <= ?
      ORDER BY t.fire_time, t.id LIMIT ?`);
    this.#markFired = db.prepare("UPDATE timers SET fired_at = ?, event_id = ? WHERE id = ? AND fired_at IS NULL");
    this.#next = db.prepare("SELECT min(fire_time) FROM timers WHERE fired_at IS NULL").pluck();
    this.#pendingCount = db.prepare("SELECT count(*) FROM timers WHERE fired_at IS NULL").pluck();
    this.#userDeleted = db.prepare("SELECT 1 FROM deleted_users WHERE user_id = ?").pluck();
    this.#markUserDeleted = db.prepare(
      "INSERT INTO deleted_users (user_id, deleted_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
    );
    this.#purgeTimers = db.prepare("DELETE FROM timers WHERE user_id = ?");
    this.#purgeTasks = db.prepare("DELETE FROM tasks WHERE user_id = ?");
  }

  /** The latest version of the task this service has applied, if any. */
  known(taskId: string): KnownTask | undefined {
    return this.#known.get(taskId) as KnownTask | undefined;
  }

  isUserDeleted(userId: string): boolean {
    return this.#userDeleted.get(userId) !== undefined;
  }

  /**
   * Records `task` at its version and replaces its pending timers with `timers`. A planned timer
   * that already fired (same kind, offset and due time) is not scheduled again. Returns the
   * number of timers now pending for the task. `traceparent` (the context of the event being
   * applied) is stored with each timer, which fires in that trace.
   */
  schedule(task: TaskSnapshot, timers: readonly PlannedTimer[], traceparent?: string): number {
    this.#upsertTask.run({
      taskId: task.taskId,
      userId: task.userId,
      version: task.version,
      state: task.open ? "open" : "completed",
      title: task.title,
      timeZone: task.timeZone,
    });
    this.#deletePending.run(task.taskId);
    let pending = 0;
    for (const t of timers) {
      const r = this.#insertTimer.run({
        taskId: task.taskId,
        userId: task.userId,
        kind: t.kind,
        offsetSeconds: t.offsetSeconds,
        dueTime: task.dueTime,
        fireTime: t.fireTime,
        traceparent: traceparent ?? null,
      });
      pending += r.changes;
    }
    return pending;
  }

  /**
   * Records that the task was completed or deleted at `version` and drops its timers: the pending
   * ones for a completion (the fired ones stay as fire-once markers, so a reopened task does not
   * repeat a reminder it already sent), all for a deletion. Returns how many were dropped.
   */
  close(taskId: string, userId: string, version: number, state: "completed" | "deleted"): number {
    const dropped = (state === "completed" ? this.#deletePending : this.#deleteAll).run(taskId).changes;
    this.#upsertTask.run({ taskId, userId, version, state, title: "", timeZone: "" });
    return dropped;
  }

  /** Drops every task and timer of a user and remembers the deletion. Returns the number of timers dropped. */
  purgeUser(userId: string, at: Date): number {
    const timers = this.#purgeTimers.run(userId).changes;
    this.#purgeTasks.run(userId);
    this.#markUserDeleted.run(userId, at.toISOString());
    return timers;
  }

  /** A user's timers that have not fired, earliest first. */
  pendingFor(userId: string): ScheduledTimer[] {
    return this.#pendingFor.all(userId) as ScheduledTimer[];
  }

  /** Up to `limit` timers with fire_time <= now that have not fired, earliest first. */
  dueTimers(now: number, limit: number): DueTimer[] {
    return this.#due.all(now, limit) as DueTimer[];
  }

  /**
   * Deletes up to `limit` fired timers whose due time is before `dueBefore`; returns how many.
   * Safe once `dueBefore` is further back than deriveTimers ever plans (OVERDUE_GRACE_MS): such a
   * timer can never be planned again, so its fire-once marker has nothing left to guard.
   */
  pruneFired(dueBefore: number, limit: number): number {
    return this.#pruneFired.run(dueBefore, limit).changes;
  }

  /** Sets the fire-once marker. False if the timer had already fired (or is gone). */
  markFired(id: number, firedAt: number, eventId: string): boolean {
    return this.#markFired.run(firedAt, eventId, id).changes === 1;
  }

  /** Number of timers that have not fired, of every user (the taskmesh_reminders_pending gauge). */
  pendingCount(): number {
    return this.#pendingCount.get() as number;
  }

  /** The earliest fire time of a pending timer (epoch ms), if there is one. */
  nextFireTime(): number | undefined {
    const v = this.#next.get() as number | null;
    return v ?? undefined;
  }
}
