import { Code, ConnectError } from "@connectrpc/connect";
import {
  appendEvent,
  type Db,
  inboxMigration,
  type Migration,
  outboxMigration,
  outboxStreamSeqMigration,
} from "@taskmesh/platform";
import type Database from "better-sqlite3";
import {
  changedFields,
  projectDeleted,
  taskCompleted,
  taskCreated,
  taskDeleted,
  taskReopened,
  taskUpdated,
} from "./events.js";
import { LabelsStore } from "./labels-store.js";
import type { Cursor, ManualCursor } from "./page-token.js";
import { type ChangeKind, noteChange } from "./project-feed.js";
import type { ProjectRecord } from "./project-record.js";
import { ProjectsStore } from "./projects-store.js";
import { MAX_RANK_LENGTH, rankBetween, ranksFor } from "./rank.js";
import { SHARING_MIGRATION_SQL, SharingStore } from "./sharing-store.js";
import type { PriorityLevel, TaskFields, TaskRecord, TaskStatusName } from "./task-record.js";

/**
 * Sort value of a task without due time: after every real due time (the latest Timestamp,
 * 9999-12-31, is ~2.5e14 ms) and still exact as a JS number, so cursors round-trip losslessly.
 */
export const NO_DUE_SORT = Number.MAX_SAFE_INTEGER;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "tasks and idempotency keys",
    sql: `
      CREATE TABLE tasks (
        id               TEXT PRIMARY KEY,
        user_id          TEXT NOT NULL,
        title            TEXT NOT NULL,
        notes            TEXT NOT NULL DEFAULT '',
        status           TEXT NOT NULL CHECK (status IN ('open', 'completed')),
        due_time         INTEGER,                      -- epoch ms; NULL = no due time
        time_zone        TEXT NOT NULL DEFAULT '',     -- IANA name; '' = UTC
        recurrence_rule  TEXT NOT NULL DEFAULT '',
        reminder_offsets TEXT NOT NULL DEFAULT '[]',   -- JSON array of seconds before due_time
        parent_task_id   TEXT,
        create_time      INTEGER NOT NULL,
        update_time      INTEGER NOT NULL,
        complete_time    INTEGER,
        version          INTEGER NOT NULL,
        -- The list order: due time ascending, tasks without one last, then id.
        due_sort INTEGER GENERATED ALWAYS AS (coalesce(due_time, ${NO_DUE_SORT})) VIRTUAL
      ) STRICT;
      -- Keyset pages of one user's tasks, with and without a status filter.
      CREATE INDEX tasks_by_user_due ON tasks (user_id, due_sort, id);
      CREATE INDEX tasks_by_user_status_due ON tasks (user_id, status, due_sort, id);

      -- Keys kept after the task is deleted, so a late retry cannot resurrect it. scope keeps
      -- client keys (CreateTask) apart from keys the recurrence service derives (CreateOccurrence).
      CREATE TABLE idempotency_keys (
        user_id     TEXT NOT NULL,
        scope       TEXT NOT NULL,
        key         TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        PRIMARY KEY (user_id, scope, key)
      ) STRICT, WITHOUT ROWID;
    `,
  },
  // Events: the outbox of what this service publishes, the inbox of what it has applied (events.ts).
  outboxMigration(2),
  inboxMigration(3),
  {
    version: 4,
    name: "deleted users",
    // Users whose user.deleted has been applied. Their tokens stay valid until they expire (user
    // tokens are stateless JWTs), so without this a deleted user could write tasks nobody would
    // ever purge. Ids only.
    sql: "CREATE TABLE deleted_users (user_id TEXT PRIMARY KEY, deleted_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;",
  },
  outboxStreamSeqMigration(5),
  {
    version: 6,
    name: "task priority",
    // Existing tasks become P4, the default (task.proto Priority). ADD COLUMN keeps every row.
    sql: `
      ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 4 CHECK (priority BETWEEN 1 AND 4);
      CREATE INDEX tasks_by_user_priority_due ON tasks (user_id, priority, due_sort, id);
    `,
  },
  {
    version: 7,
    name: "projects, labels and subtasks",
    // Every user with tasks gets an Inbox (a v4-shaped UUID made in SQL) holding all of them,
    // ranked in the order ListTasks showed them (due, id): rank "d" + four base-62 digits is a
    // valid fractional-indexing key for up to 62^4 tasks (MAX_TASKS_PER_USER is at most 10^6).
    sql: `
      CREATE TABLE projects (
        id          TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL,
        name        TEXT NOT NULL,
        inbox       INTEGER NOT NULL CHECK (inbox IN (0, 1)),
        archived    INTEGER NOT NULL CHECK (archived IN (0, 1)),
        rank        TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL,
        version     INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX projects_one_inbox ON projects (user_id) WHERE inbox = 1;
      CREATE INDEX projects_by_user_rank ON projects (user_id, rank, id);

      CREATE TABLE labels (
        id          TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL,
        name        TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL,
        version     INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX labels_by_user_name ON labels (user_id, name COLLATE NOCASE);

      CREATE TABLE task_labels (
        user_id  TEXT NOT NULL,
        task_id  TEXT NOT NULL,
        label_id TEXT NOT NULL,
        PRIMARY KEY (task_id, label_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX task_labels_by_label ON task_labels (label_id, task_id);

      ALTER TABLE tasks ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
      ALTER TABLE tasks ADD COLUMN parent_id TEXT;
      ALTER TABLE tasks ADD COLUMN rank TEXT NOT NULL DEFAULT '';
      CREATE INDEX tasks_by_project_rank ON tasks (user_id, project_id, rank, id);
      CREATE INDEX tasks_by_project_due ON tasks (user_id, project_id, due_sort, id);
      CREATE INDEX tasks_by_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;

      INSERT INTO projects (id, user_id, name, inbox, archived, rank, create_time, update_time, version)
        SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'
                 || substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
               user_id, 'Inbox', 1, 0, 'a0', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
               CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 1
        FROM (SELECT DISTINCT user_id FROM tasks);
      UPDATE tasks SET project_id = (SELECT p.id FROM projects p WHERE p.user_id = tasks.user_id AND p.inbox = 1);
      WITH ordered AS (
        SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY due_sort, id) - 1 AS n FROM tasks
      )
      UPDATE tasks SET rank = (
        SELECT 'd' || substr(d, n / 238328 % 62 + 1, 1) || substr(d, n / 3844 % 62 + 1, 1)
                   || substr(d, n / 62 % 62 + 1, 1) || substr(d, n % 62 + 1, 1)
        FROM ordered, (SELECT '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz' AS d)
        WHERE ordered.id = tasks.id
      );
    `,
  },
  // Sharing (sharing-store.ts): members, invitations, a project's tasks read by project alone.
  { version: 8, name: "shared projects", sql: SHARING_MIGRATION_SQL },
  // 9–19 are free: the calendar feeds took 20 while projects, labels and subtasks (7) were in flight.
  {
    version: 20,
    name: "calendar feeds",
    // One feed per user; only the SHA-256 of its secret is kept (calendar-feed.ts), looked up by
    // equality on the hash, so a database leak does not leak working feed URLs.
    sql: `
      CREATE TABLE calendar_feeds (
        user_id     TEXT PRIMARY KEY,
        secret_hash BLOB NOT NULL UNIQUE,
        create_time INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 21,
    name: "task count per user",
    // MAX_TASKS_PER_USER is checked on every create: a count(*) over the user's index rows grows
    // with the user (about 5 ms at 100k tasks); the triggers keep the number in step with every
    // insert and delete, in the same transaction, so the check is one primary-key read.
    sql: `
      CREATE TABLE user_task_counts (
        user_id TEXT PRIMARY KEY,
        n       INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO user_task_counts (user_id, n) SELECT user_id, count(*) FROM tasks GROUP BY user_id;
      CREATE TRIGGER tasks_counted_on_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO user_task_counts (user_id, n) VALUES (NEW.user_id, 1)
          ON CONFLICT (user_id) DO UPDATE SET n = n + 1;
      END;
      CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks BEGIN
        UPDATE user_task_counts SET n = n - 1 WHERE user_id = OLD.user_id;
      END;
      CREATE TRIGGER tasks_counted_on_move AFTER UPDATE OF user_id ON tasks BEGIN
        UPDATE user_task_counts SET n = n - 1 WHERE user_id = OLD.user_id;
        INSERT INTO user_task_counts (user_id, n) VALUES (NEW.user_id, 1)
          ON CONFLICT (user_id) DO UPDATE SET n = n + 1;
      END;
    `,
  },
];

export type { TaskFields, TaskRecord, TaskStatusName } from "./task-record.js";

export interface IdempotencyKey {
  scope: "create" | "occurrence";
  key: string;
  /** Digest of the request the key was first used with; a different request under the key is refused. */
  fingerprint: string;
}

export type CreateResult =
  | { kind: "created"; task: TaskRecord }
  | { kind: "repeat"; task: TaskRecord }
  | { kind: "key-reused" }
  | { kind: "key-task-deleted" }
  | { kind: "limit"; max: number }
  | { kind: "parent-not-found" };

/** Where MoveTask puts a task: right after or right before a neighbour. */
export type Neighbour = { after: string } | { before: string };

interface Row {
  id: string;
  user_id: string;
  title: string;
  notes: string;
  status: TaskStatusName;
  due_time: number | null;
  time_zone: string;
  recurrence_rule: string;
  reminder_offsets: string;
  parent_task_id: string | null;
  priority: PriorityLevel;
  project_id: string;
  parent_id: string | null;
  rank: string;
  assignee_id: string | null;
  /** JSON array (COLUMNS' subquery); absent when writing. */
  label_ids?: string;
  create_time: number;
  update_time: number;
  complete_time: number | null;
  version: number;
  due_sort: number;
}

const COLUMNS = `id, user_id, title, notes, status, due_time, time_zone, recurrence_rule, reminder_offsets,
  parent_task_id, priority, project_id, parent_id, rank, assignee_id, create_time, update_time, complete_time, version,
  due_sort,
  (SELECT json_group_array(label_id) FROM task_labels tl WHERE tl.task_id = tasks.id) AS label_ids`;

export interface ListQuery {
  userId: string;
  status: TaskStatusName | null;
  priority: PriorityLevel | null;
  dueAfterMs: number | null;
  dueBeforeMs: number | null;
  projectId: string | null;
  labelId: string | null;
  /** Leave out tasks of archived projects. */
  hideArchived: boolean;
  /** "due": (due_sort, id) with a Cursor; "manual": (rank, id) with a ManualCursor. */
  order: "due" | "manual";
  after: Cursor | ManualCursor | null;
  limit: number;
}

/**
 * SQL for the tasks database. Every statement is prepared once (list variants on first use);
 * every read and write is scoped by user_id. Each write is one `db.transaction` that also
 * appends its event to the outbox (events.ts), so the event exists if and only if the change
 * committed; a write that changes nothing appends nothing.
 *
 * The event carries the active span's trace context (appendEvent's default): in a handler that is
 * the grpc-js SERVER span of the call (instrumentation-grpc runs the handler inside it), so the
 * relay's publish span is its child. Passing the caller's `traceparent` header instead would skip
 * that span and hang the publish off the caller's CLIENT span.
 */
export class TasksStore {
  readonly #db: Db;
  readonly #insert: Database.Statement;
  readonly #get: Database.Statement<[string, string], Row>;
  readonly #count: Database.Statement<[string], { n: number }>;
  readonly #getKey: Database.Statement<[string, string, string], { task_id: string; fingerprint: string }>;
  readonly #insertKey: Database.Statement;
  readonly #update: Database.Statement;
  readonly #complete: Database.Statement;
  readonly #reopen: Database.Statement;
  readonly #delete: Database.Statement<[string, string]>;
  readonly #purgeTasks: Database.Statement<[string]>;
  readonly #purgeKeys: Database.Statement<[string]>;
  readonly #tombstone: Database.Statement<[string, number]>;
  readonly #isDeleted: Database.Statement<[string]>;
  readonly #unpublished: Database.Statement;
  readonly #feedUpsert: Database.Statement;
  readonly #feedDelete: Database.Statement<[string]>;
  readonly #feedGet: Database.Statement<[string], { create_time: number }>;
  readonly #feedUser: Database.Statement<[Buffer], { user_id: string }>;
  readonly #calendarTasks: Database.Statement<[string], Row>;
  readonly #lists = new Map<string, Database.Statement<Record<string, unknown>, Row>>();
  readonly #lastRank: Database.Statement<[string, string | null], string | null>;
  readonly #siblingAfter: Database.Statement<[string, string | null, string, string], string>;
  readonly #siblingBefore: Database.Statement<[string, string | null, string, string], string>;
  readonly #children: Database.Statement<[string], Row>;
  readonly #inProject: Database.Statement<[string], Row>;
  readonly #placeTask: Database.Statement;
  readonly #siblings: Database.Statement<[string, string | null], string>;
  readonly #setRank: Database.Statement<[string, string]>;
  readonly #getAny: Database.Statement<[string], Row>;
  readonly #orphansOf: Database.Statement<[string, string], Row>;
  readonly #assignedTo: Database.Statement<[string], Row>;
  readonly #unassign: Database.Statement<[number, string]>;
  readonly #purgeOthers: Database.Statement<[string]>[];
  readonly projects: ProjectsStore;
  readonly labels: LabelsStore;
  readonly sharing: SharingStore;

  constructor(db: Db) {
    this.#db = db;
    this.projects = new ProjectsStore(db);
    this.sharing = new SharingStore(db);
    this.labels = new LabelsStore(db);
    this.#insert = db.prepare(`INSERT INTO tasks (id, user_id, title, notes, status, due_time, time_zone,
        recurrence_rule, reminder_offsets, parent_task_id, priority, project_id, parent_id, rank, assignee_id,
        create_time, update_time, complete_time, version)
      VALUES (@id, @user_id, @title, @notes, @status, @due_time, @time_zone, @recurrence_rule, @reminder_offsets,
        @parent_task_id, @priority, @project_id, @parent_id, @rank, @assignee_id, @create_time, @update_time,
        @complete_time, @version)`);
    // Siblings: the tasks of one project with the same parent (top-level tasks: parent_id IS NULL).
    this.#lastRank = db
      .prepare<[string, string | null], string | null>(
        "SELECT max(rank) FROM tasks WHERE project_id = ? AND parent_id IS ?",
      )
      .pluck();
    this.#siblingAfter = db
      .prepare<[string, string | null, string, string], string>(`SELECT rank FROM tasks WHERE project_id = ?
        AND parent_id IS ? AND id != ? AND rank > ? ORDER BY rank LIMIT 1`)
      .pluck();
    this.#siblingBefore = db
      .prepare<[string, string | null, string, string], string>(`SELECT rank FROM tasks WHERE project_id = ?
        AND parent_id IS ? AND id != ? AND rank < ? ORDER BY rank DESC LIMIT 1`)
      .pluck();
    // Subtasks and a project's tasks of every creator (a shared project holds several users' tasks).
    this.#children = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE parent_id = ? ORDER BY rank, id`);
    this.#inProject = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE project_id = ?
      ORDER BY parent_id IS NULL, rank, id`);
    this.#siblings = db
      .prepare<[string, string | null], string>(
        "SELECT id FROM tasks WHERE project_id = ? AND parent_id IS ? ORDER BY rank, id",
      )
      .pluck();
    this.#setRank = db.prepare("UPDATE tasks SET rank = ? WHERE id = ?");
    this.#getAny = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE id = ?`);
    this.#assignedTo = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE assignee_id = ?`);
    this.#unassign = db.prepare(
      "UPDATE tasks SET assignee_id = NULL, update_time = ?, version = version + 1 WHERE id = ?",
    );
    this.#orphansOf = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE user_id != ?
      AND parent_id IN (SELECT id FROM tasks WHERE user_id = ?)`);
    this.#placeTask = db.prepare(`UPDATE tasks SET project_id = @project_id, rank = @rank, update_time = @now,
      version = version + 1 WHERE id = @id AND user_id = @user_id`);
    this.#purgeOthers = ["task_labels", "labels", "projects", "user_task_counts"].map((t) =>
      db.prepare<[string]>(`DELETE FROM ${t} WHERE user_id = ?`),
    );
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM tasks WHERE id = ? AND user_id = ?`);
    this.#count = db.prepare("SELECT n FROM user_task_counts WHERE user_id = ?");
    this.#getKey = db.prepare(
      "SELECT task_id, fingerprint FROM idempotency_keys WHERE user_id = ? AND scope = ? AND key = ?",
    );
    this.#insertKey = db.prepare(`INSERT INTO idempotency_keys (user_id, scope, key, task_id, fingerprint, create_time)
      VALUES (?, ?, ?, ?, ?, ?)`);
    this.#update = db.prepare(`UPDATE tasks SET title = @title, notes = @notes, due_time = @due_time,
        time_zone = @time_zone, recurrence_rule = @recurrence_rule, reminder_offsets = @reminder_offsets,
        priority = @priority, project_id = @project_id, rank = @rank, assignee_id = @assignee_id,
        update_time = @update_time,
        version = version + 1
      WHERE id = @id AND user_id = @user_id`);
    this.#complete = db.prepare(`UPDATE tasks SET status = 'completed', complete_time = @now, update_time = @now,
        version = version + 1
      WHERE id = @id AND user_id = @user_id AND status = 'open'`);
    this.#reopen = db.prepare(`UPDATE tasks SET status = 'open', complete_time = NULL, update_time = @now,
        version = version + 1
      WHERE id = @id AND user_id = @user_id AND status = 'completed'`);
    this.#delete = db.prepare("DELETE FROM tasks WHERE id = ? AND user_id = ?");
    this.#purgeTasks = db.prepare("DELETE FROM tasks WHERE user_id = ?");
    this.#purgeKeys = db.prepare("DELETE FROM idempotency_keys WHERE user_id = ?");
    this.#tombstone = db.prepare("INSERT OR IGNORE INTO deleted_users (user_id, deleted_at) VALUES (?, ?)");
    this.#isDeleted = db.prepare("SELECT 1 FROM deleted_users WHERE user_id = ?").pluck();
    this.#unpublished = db.prepare("SELECT count(*) FROM outbox WHERE published_at IS NULL").pluck();
    this.#feedUpsert = db.prepare(`INSERT INTO calendar_feeds (user_id, secret_hash, create_time) VALUES (?, ?, ?)
      ON CONFLICT (user_id) DO UPDATE SET secret_hash = excluded.secret_hash, create_time = excluded.create_time`);
    this.#feedDelete = db.prepare("DELETE FROM calendar_feeds WHERE user_id = ?");
    this.#feedGet = db.prepare("SELECT create_time FROM calendar_feeds WHERE user_id = ?");
    this.#feedUser = db.prepare("SELECT user_id FROM calendar_feeds WHERE secret_hash = ?");
    this.#calendarTasks = db.prepare(
      `SELECT ${COLUMNS} FROM tasks WHERE user_id = ? AND status = 'open' AND due_time IS NOT NULL ORDER BY due_sort, id`,
    );
  }

  /** Sets the user's feed secret hash (replacing any previous one, whose URL then stops working). */
  setCalendarFeed(userId: string, secretHash: Buffer, now: number): void {
    this.#feedUpsert.run(userId, secretHash, now);
  }

  /** True when the user had a feed, now removed. */
  deleteCalendarFeed(userId: string): boolean {
    return this.#feedDelete.run(userId).changes > 0;
  }

  /** When the user's current feed secret was made, or undefined without a feed. */
  calendarFeed(userId: string): { createTime: number } | undefined {
    const row = this.#feedGet.get(userId);
    return row && { createTime: row.create_time };
  }

  /** The user whose feed secret hashes to `secretHash`, if any. */
  calendarFeedUser(secretHash: Buffer): string | undefined {
    return this.#feedUser.get(secretHash)?.user_id;
  }

  /** The user's open tasks that have a due time, in due order: what the calendar feed shows. */
  calendarTasks(userId: string): TaskRecord[] {
    return this.#calendarTasks.all(userId).map(fromRow);
  }

  get(userId: string, id: string): TaskRecord | undefined {
    const row = this.#get.get(id, userId);
    return row && fromRow(row);
  }

  /** The task whoever created it: only after the caller's role in its project is checked (access.ts). */
  getAny(id: string): TaskRecord | undefined {
    const row = this.#getAny.get(id);
    return row && fromRow(row);
  }

  /**
   * Creates a task, or with a key already seen for this user and scope, returns the task it
   * created. The key check, the per-user limit and both inserts are one transaction.
   * `fields` may read the database (CreateOccurrence copies its parent); undefined = parent gone.
   */
  create(
    userId: string,
    fields: () => TaskFields | undefined,
    opts: { id: string; now: number; maxTasks: number; key?: IdempotencyKey },
  ): CreateResult {
    return this.#db
      .transaction((): CreateResult => {
        const { key } = opts;
        if (key) {
          const seen = this.#getKey.get(userId, key.scope, key.key);
          if (seen) {
            if (seen.fingerprint !== key.fingerprint) return { kind: "key-reused" };
            const task = this.get(userId, seen.task_id);
            return task ? { kind: "repeat", task } : { kind: "key-task-deleted" };
          }
        }
        const f = fields();
        if (!f) return { kind: "parent-not-found" };
        if ((this.#count.get(userId)?.n ?? 0) >= opts.maxTasks) return { kind: "limit", max: opts.maxTasks };
        const task: TaskRecord = {
          ...f,
          id: opts.id,
          userId,
          status: "open",
          rank: this.#endRank(f.projectId, f.parentId),
          createTime: opts.now,
          updateTime: opts.now,
          completeTime: null,
          version: 1,
        };
        this.#insert.run(toRow(task));
        this.labels.setLinks(userId, task.id, task.labelIds);
        if (key) this.#insertKey.run(userId, key.scope, key.key, task.id, key.fingerprint, opts.now);
        appendEvent(this.#db, taskCreated(task));
        this.#note(task, "task_created");
        return { kind: "created", task };
      })
      .immediate();
  }

  /**
   * Read-modify-write in one transaction: `change` gets the current task and returns the new
   * fields, or null when nothing changes (no version bump, no event). Undefined when absent.
   */
  update(
    userId: string,
    id: string,
    now: number,
    change: (current: TaskRecord) => TaskFields | null,
  ): TaskRecord | undefined {
    return this.#db
      .transaction(() => {
        const current = this.get(userId, id);
        if (!current) return undefined;
        const next = change(current);
        const changed = next === null ? [] : changedFields(current, next);
        if (next === null || changed.length === 0) return current;
        const moved = next.projectId !== current.projectId;
        // A task moved to another project goes to its end; its subtasks follow it there.
        const rank = moved ? this.#endRank(next.projectId, current.parentId) : current.rank;
        this.#update.run(toRow({ ...current, ...next, rank, updateTime: now }));
        if (changed.includes("label_ids")) this.labels.setLinks(userId, id, next.labelIds);
        const updated = this.get(userId, id) as TaskRecord;
        appendEvent(this.#db, taskUpdated(updated, moved ? [...changed, "rank"] : changed));
        this.#note(updated, moved ? "task_moved" : "task_updated");
        if (moved) this.#note({ ...updated, projectId: current.projectId }, "task_moved");
        if (moved)
          for (const child of this.#children.all(id)) this.#place(fromRow(child), next.projectId, child.rank, now);
        return updated;
      })
      .immediate();
  }

  /**
   * Marks the task completed; a completed task is returned unchanged. Undefined when absent. Open
   * subtasks are FAILED_PRECONDITION unless `completeChildren`: then they are completed first, in
   * this transaction, each with its task.completed.
   */
  complete(userId: string, id: string, now: number, completeChildren = false): TaskRecord | undefined {
    return this.#db
      .transaction(() => {
        const open = this.#children.all(id).filter((c) => c.status === "open");
        if (open.length > 0 && this.get(userId, id)?.status === "open") {
          if (!completeChildren)
            throw new ConnectError(
              `the task has ${open.length} open subtask${open.length === 1 ? "" : "s"}; complete ${open.length === 1 ? "it" : "them"} first or set complete_children`,
              Code.FailedPrecondition,
            );
          for (const c of open) this.complete(c.user_id, c.id, now);
        }
        // No row changes when already completed (or absent): then nothing happened, no event.
        const changed = this.#complete.run({ id, user_id: userId, now }).changes > 0;
        const task = this.get(userId, id);
        if (changed && task) {
          appendEvent(this.#db, taskCompleted(task));
          this.#note(task, "task_completed");
        }
        return task;
      })
      .immediate();
  }

  /** Marks a completed task open again; an open task is returned unchanged. Undefined when absent. */
  reopen(userId: string, id: string, now: number): TaskRecord | undefined {
    return this.#db
      .transaction(() => {
        const changed = this.#reopen.run({ id, user_id: userId, now }).changes > 0;
        const task = this.get(userId, id);
        if (changed && task) {
          appendEvent(this.#db, taskReopened(task));
          this.#note(task, "task_reopened");
        }
        return task;
      })
      .immediate();
  }

  /**
   * True when the task existed (and was the user's) and is now gone. Its subtasks are deleted
   * first, each with its own task.deleted.
   */
  delete(userId: string, id: string, now: number): boolean {
    return this.#db
      .transaction(() => {
        const task = this.get(userId, id);
        if (!task) return false;
        for (const child of this.#children.all(id)) this.delete(child.user_id, child.id, now);
        if (this.#delete.run(id, userId).changes === 0) return false;
        this.labels.setLinks(userId, id, []);
        appendEvent(this.#db, taskDeleted(task, now));
        this.#note(deletedVersion(task), "task_deleted", now);
        return true;
      })
      .immediate();
  }

  /**
   * Places the task right after or before a sibling (one row write; subtasks of a task moved to
   * another project follow it). Refusals are ConnectErrors naming the neighbour's field.
   */
  move(userId: string, id: string, neighbour: Neighbour, now: number): TaskRecord {
    return this.#db
      .transaction(() => {
        const task = this.get(userId, id);
        if (!task) throw new ConnectError(`task ${id} not found`, Code.NotFound);
        const field = "after" in neighbour ? "after_task_id" : "before_task_id";
        // The neighbour may be another member's task; the service checked the caller's role in its project.
        const n = this.getAny("after" in neighbour ? neighbour.after : neighbour.before);
        if (!n) throw new ConnectError(`${field}: task not found`, Code.NotFound);
        if (n.id === task.id) throw new ConnectError(`${field}: must name another task`, Code.InvalidArgument);
        if (n.parentId !== task.parentId)
          throw new ConnectError(
            `${field}: ${task.parentId ? "a subtask moves among the subtasks of its parent" : "must name a top-level task (not a subtask)"}`,
            Code.InvalidArgument,
          );
        if (n.projectId !== task.projectId && this.projects.getAny(n.projectId)?.archived)
          throw new ConnectError(`${field}: that task's project is archived`, Code.FailedPrecondition);
        const key = [n.projectId, n.parentId, task.id, n.rank] as const;
        const rank =
          "after" in neighbour
            ? rankBetween(n.rank, this.#siblingAfter.get(...key) ?? null)
            : rankBetween(this.#siblingBefore.get(...key) ?? null, n.rank);
        const moved = this.#place(task, n.projectId, rank, now);
        if (n.projectId !== task.projectId)
          for (const child of this.#children.all(id)) this.#place(fromRow(child), n.projectId, child.rank, now);
        if (rank.length <= MAX_RANK_LENGTH) return moved;
        this.#renumber(n.projectId, n.parentId);
        return this.get(userId, id) as TaskRecord;
      })
      .immediate();
  }

  /**
   * Deletes the project and all its tasks (subtasks first), each with its task.deleted, then the
   * project with project.deleted. The Inbox is FAILED_PRECONDITION. Returns the tasks deleted.
   */
  deleteProject(userId: string, projectId: string, now: number): number {
    return this.#db
      .transaction(() => {
        const p: ProjectRecord = this.projects.require(userId, projectId);
        if (p.inbox) throw new ConnectError("the Inbox cannot be deleted", Code.FailedPrecondition);
        const n = this.#dropProjectTasks(projectId, now);
        this.sharing.dropProject(p.id);
        this.projects.deleteRow(p);
        appendEvent(this.#db, projectDeleted(p, now));
        noteChange(this.#db, { projectId: p.id, kind: "project_deleted", taskId: "", actorId: userId, time: now });
        return n;
      })
      .immediate();
  }

  /**
   * Deletes every task in the project, whoever created it (subtasks first), each with its
   * task.deleted under its creator's user id. Returns how many.
   */
  #dropProjectTasks(projectId: string, now: number, exceptUser?: string): number {
    const tasks = this.#inProject.all(projectId).filter((t) => t.user_id !== exceptUser);
    for (const t of tasks) {
      this.#delete.run(t.id, t.user_id);
      this.labels.setLinks(t.user_id, t.id, []);
      appendEvent(this.#db, taskDeleted(fromRow(t), now));
      this.#note(deletedVersion(fromRow(t)), "task_deleted", now);
    }
    return tasks.length;
  }

  /**
   * Unassigns `userId` from the tasks of `projectId` (every project when null) that they may no
   * longer be assigned (removed, left, made a viewer, or deleted), each with its task.updated;
   * with `skipCreator`, that user's own tasks are left alone (a purge deletes them anyway).
   */
  unassign(userId: string, projectId: string | null, now: number, skipCreator = false): void {
    this.#db
      .transaction(() => {
        for (const row of this.#assignedTo.all(userId)) {
          if ((projectId !== null && row.project_id !== projectId) || (skipCreator && row.user_id === userId)) continue;
          this.#unassign.run(now, row.id);
          const task = this.getAny(row.id) as TaskRecord;
          appendEvent(this.#db, taskUpdated(task, ["assignee_id"]));
          this.#note(task, "task_updated");
        }
      })
      .immediate();
  }

  /** Notes the change for WatchProject (project-feed.ts), next to its outbox event. */
  #note(task: TaskRecord, kind: ChangeKind, at = task.updateTime): void {
    noteChange(this.#db, {
      projectId: task.projectId,
      kind,
      taskId: task.id,
      taskVersion: task.version,
      actorId: task.userId,
      time: at,
    });
  }

  /** Runs `fn` in one transaction (the store's methods inside it become savepoints). */
  atomically<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  /** The subtasks of a task (of any creator), in their order. */
  children(id: string): TaskRecord[] {
    return this.#children.all(id).map(fromRow);
  }

  /** Moves the task to `projectId` at `rank` with its task.updated. */
  #place(task: TaskRecord, projectId: string, rank: string, now: number): TaskRecord {
    this.#placeTask.run({ id: task.id, user_id: task.userId, project_id: projectId, rank, now });
    const placed = this.get(task.userId, task.id) as TaskRecord;
    appendEvent(this.#db, taskUpdated(placed, projectId !== task.projectId ? ["project_id", "rank"] : ["rank"]));
    this.#note(placed, "task_moved");
    if (projectId !== task.projectId) this.#note({ ...placed, projectId: task.projectId }, "task_moved");
    return placed;
  }

  /**
   * Gives the siblings short ranks in their current order. No version bump and no event: the order
   * (what a person sees and set) is unchanged, only its encoding; the next event of each task
   * carries its new rank. Rare: only after many moves into the same gap (MAX_RANK_LENGTH).
   */
  #renumber(projectId: string, parentId: string | null): void {
    const ids = this.#siblings.all(projectId, parentId);
    const ranks = ranksFor(ids.length);
    for (const [i, id] of ids.entries()) this.#setRank.run(ranks[i] as string, id);
  }

  /** A rank after the last sibling in the project. */
  #endRank(projectId: string, parentId: string | null): string {
    return rankBetween(this.#lastRank.get(projectId, parentId) ?? null, null);
  }

  /**
   * Deletes every task, idempotency key, project, label and the calendar feed of the user; the number of tasks
   * deleted. No event:
   * the user.deleted that causes a purge is the fact consumers act on. Inside another transaction
   * (the user.deleted consumer's inbox transaction) it runs as a savepoint of that transaction.
   */
  purgeUser(userId: string): number {
    return this.#db
      .transaction(() => {
        // Sharing: the projects the user owns go with every task in them: other members' tasks
        // each with its task.deleted (their creators' consumers did not get this user.deleted);
        // so do other members' subtasks of the user's tasks. Then the user's memberships and the
        // invitations they sent. The user's own tasks go without events, as before.
        const at = Date.now();
        for (const p of this.projects.ownedBy(userId)) {
          this.#dropProjectTasks(p.id, at, userId);
          this.sharing.dropProject(p.id);
        }
        for (const t of this.#orphansOf.all(userId, userId)) {
          this.#delete.run(t.id, t.user_id);
          this.labels.setLinks(t.user_id, t.id, []);
          appendEvent(this.#db, taskDeleted(fromRow(t), at));
          this.#note(deletedVersion(fromRow(t)), "task_deleted", at);
        }
        this.unassign(userId, null, at, true);
        this.sharing.dropUser(userId);
        const n = this.#purgeTasks.run(userId).changes;
        this.#purgeKeys.run(userId);
        this.#feedDelete.run(userId);
        for (const stmt of this.#purgeOthers) stmt.run(userId);
        return n;
      })
      .immediate();
  }

  /**
   * The effect of user.deleted: purges the user (purgeUser) and records that the account is gone,
   * so that tokens the user still holds cannot write anything afterwards (isDeletedUser). Returns
   * the number of tasks deleted. PurgeUser (the saga step) only purges: the saga may still be
   * compensated, and the account then lives on.
   */
  forgetUser(userId: string, now: number): number {
    return this.#db
      .transaction(() => {
        const n = this.purgeUser(userId);
        this.#tombstone.run(userId, now);
        return n;
      })
      .immediate();
  }

  /** True once user.deleted has been applied for `userId`. */
  isDeletedUser(userId: string): boolean {
    return this.#isDeleted.get(userId) !== undefined;
  }

  /** Events in the outbox not yet acknowledged by JetStream. */
  unpublishedEvents(): number {
    return this.#unpublished.get() as number;
  }

  count(userId: string): number {
    return this.#count.get(userId)?.n ?? 0;
  }

  /**
   * One page in (due_sort, id) order after `after`. Reads `limit` rows; the caller asks for one
   * more than the page size to learn whether another page follows.
   */
  list(q: ListQuery): { task: TaskRecord; dueSort: number }[] {
    const stmt = this.#listStatement([
      q.status !== null,
      q.priority !== null,
      q.dueAfterMs !== null,
      q.dueBeforeMs !== null,
      q.after !== null,
      q.projectId !== null,
      q.labelId !== null,
      q.hideArchived,
      q.order === "manual",
    ]);
    const rows = stmt.all({
      user_id: q.userId,
      status: q.status,
      priority: q.priority,
      due_after: q.dueAfterMs,
      due_before: q.dueBeforeMs,
      project_id: q.projectId,
      label_id: q.labelId,
      after_sort: q.after && "dueSort" in q.after ? q.after.dueSort : null,
      after_rank: q.after && "rank" in q.after ? q.after.rank : null,
      after_id: q.after?.id ?? null,
      limit: q.limit,
    });
    return rows.map((r) => ({ task: fromRow(r), dueSort: r.due_sort }));
  }

  /**
   * One statement per combination of filters, so each uses its index fully instead of an
   * `(? IS NULL OR ...)` that defeats the planner. At most 2^9 shapes, prepared on first use.
   */
  #listStatement(flags: boolean[]) {
    const [status, priority, after, before, cursor, project, label, hideArchived, manual] = flags;
    const shape = flags.map((f) => +f).join("");
    let stmt = this.#lists.get(shape);
    if (!stmt) {
      // A project's list holds every member's tasks (the service checked the caller's role in it);
      // otherwise the caller's own tasks in projects the caller still has a role in.
      const where: string[] = [];
      if (!project) {
        where.push("user_id = @user_id");
        const own = `SELECT id FROM projects WHERE user_id = @user_id${hideArchived ? " AND archived = 0" : ""}`;
        const shared = `SELECT m.project_id FROM project_members m JOIN projects p ON p.id = m.project_id
          WHERE m.user_id = @user_id${hideArchived ? " AND p.archived = 0" : ""}`;
        where.push(`project_id IN (${own} UNION ${shared})`);
      }
      if (status) where.push("status = @status");
      if (priority) where.push("priority = @priority");
      // due_time (not due_sort) so that tasks without due time are excluded by either bound.
      if (after) where.push("due_time >= @due_after");
      if (before) where.push("due_time < @due_before");
      if (project) where.push("project_id = @project_id");
      if (label) where.push("id IN (SELECT task_id FROM task_labels WHERE label_id = @label_id)");
      const order = manual ? "rank, id" : "due_sort, id";
      if (cursor)
        where.push(manual ? "(rank, id) > (@after_rank, @after_id)" : "(due_sort, id) > (@after_sort, @after_id)");
      stmt = this.#db.prepare<Record<string, unknown>, Row>(
        `SELECT ${COLUMNS} FROM tasks WHERE ${where.join(" AND ")} ORDER BY ${order} LIMIT @limit`,
      );
      this.#lists.set(shape, stmt);
    }
    return stmt;
  }
}

function fromRow(r: Row): TaskRecord {
  return {
    id: r.id,
    userId: r.user_id,
    title: r.title,
    notes: r.notes,
    status: r.status,
    dueTime: r.due_time,
    timeZone: r.time_zone,
    recurrenceRule: r.recurrence_rule,
    reminderOffsets: JSON.parse(r.reminder_offsets) as number[],
    parentTaskId: r.parent_task_id,
    priority: r.priority,
    projectId: r.project_id,
    parentId: r.parent_id,
    assigneeId: r.assignee_id,
    rank: r.rank,
    labelIds: (JSON.parse(r.label_ids ?? "[]") as string[]).sort(),
    createTime: r.create_time,
    updateTime: r.update_time,
    completeTime: r.complete_time,
    version: r.version,
  };
}

function toRow(t: TaskRecord): Omit<Row, "due_sort" | "label_ids"> {
  return {
    id: t.id,
    user_id: t.userId,
    title: t.title,
    notes: t.notes,
    status: t.status,
    due_time: t.dueTime,
    time_zone: t.timeZone,
    recurrence_rule: t.recurrenceRule,
    reminder_offsets: JSON.stringify(t.reminderOffsets),
    parent_task_id: t.parentTaskId,
    priority: t.priority,
    project_id: t.projectId,
    parent_id: t.parentId,
    assignee_id: t.assigneeId,
    rank: t.rank,
    create_time: t.createTime,
    update_time: t.updateTime,
    complete_time: t.completeTime,
    version: t.version,
  };
}

/** A deleted task as WatchProject reports it: its version is the deletion's (taskDeleted's). */
function deletedVersion(task: TaskRecord): TaskRecord {
  return { ...task, version: task.version + 1 };
}
