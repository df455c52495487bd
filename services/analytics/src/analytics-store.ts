import { randomBytes } from "node:crypto";
import { type Db, inboxMigration, type Migration } from "@taskmesh/platform";
import { AUDIT_MIGRATION, type AuditEntry, AuditLog } from "./audit-log.js";
import { currentStreak, safeTimeZone } from "./streak.js";
import { SEARCH_MIGRATION, type SearchFilter, type SearchHitRow, TaskSearch } from "./task-search.js";

export type { SearchFilter, SearchHitRow };

/**
 * The read models. `tasks` holds the newest version of every task this service has heard of
 * (a deleted one stays as a tombstone row, so a stale event arriving later cannot resurrect it);
 * `task_search` is an FTS5 index of the live rows' title and notes (task-search.ts);
 * `users` holds each user's time zone (for streaks) and the newest event folded for them;
 * `deleted_users` remembers deleted accounts, because the TASKS and USERS streams are consumed
 * independently and a task event of a deleted user may arrive after its user.deleted.
 */
const SCHEMA = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE tasks (
  id           INTEGER PRIMARY KEY,
  task_id      TEXT NOT NULL UNIQUE,
  user_id      TEXT NOT NULL,
  title        TEXT NOT NULL,
  notes        TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('open', 'completed')),
  due_ms       INTEGER,
  completed_ms INTEGER,
  version      INTEGER NOT NULL,
  deleted      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_by_user ON tasks (user_id, deleted, status);

CREATE VIRTUAL TABLE task_search USING fts5(title, notes, tokenize = 'unicode61 remove_diacritics 2');

CREATE TABLE users (
  user_id   TEXT PRIMARY KEY,
  time_zone TEXT,
  as_of_ms  INTEGER
) WITHOUT ROWID;

CREATE TABLE deleted_users (
  user_id       TEXT PRIMARY KEY,
  deleted_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
`;

export const MIGRATIONS: Migration[] = [
  { version: 1, name: "read models", sql: SCHEMA },
  inboxMigration(2),
  {
    version: 3,
    name: "task priority",
    // Rows folded before priorities existed are P4, what tasks stores for them too. A row folded by
    // the previous version from an event that did carry a priority is corrected by the task's next
    // event, or at once by a rebuild (replay).
    sql: "ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 4;",
  },
  {
    version: 4,
    name: "projects and labels",
    // Rows folded before projects existed have project '' (left out of the per-project counts)
    // and no labels, until the task's next event or a rebuild. deleted_labels keeps a deleted
    // label from coming back with a task event folded after its label.deleted (a replay of a
    // consumer that lags, or an old version of the task).
    sql: `
      ALTER TABLE tasks ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
      CREATE INDEX tasks_by_user_project ON tasks (user_id, project_id) WHERE deleted = 0;
      CREATE TABLE task_labels (
        task_row INTEGER NOT NULL,
        label_id TEXT NOT NULL,
        user_id  TEXT NOT NULL,
        PRIMARY KEY (task_row, label_id)
      ) WITHOUT ROWID;
      CREATE INDEX task_labels_by_label ON task_labels (label_id, task_row);
      CREATE INDEX task_labels_by_user ON task_labels (user_id);
      CREATE TABLE deleted_labels (
        label_id TEXT PRIMARY KEY,
        user_id  TEXT NOT NULL
      ) WITHOUT ROWID;
      -- Whose project or label an id is (from project/label events, and from task events, which
      -- name the Inbox too), so SearchTasks answers NOT_FOUND for an id that is not the caller's.
      CREATE TABLE owned (
        id      TEXT PRIMARY KEY,
        kind    TEXT NOT NULL CHECK (kind IN ('project', 'label')),
        user_id TEXT NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX owned_by_user ON owned (user_id);
    `,
  },
  // 5–9 are free; the audit log took 10 while projects and labels (4) were in flight.
  AUDIT_MIGRATION,
  SEARCH_MIGRATION,
];

/** A task as folded from an event (the fields the read models keep). */
export interface TaskFacts {
  taskId: string;
  userId: string;
  title: string;
  notes: string;
  status: "open" | "completed";
  dueMs: number | undefined;
  completedMs: number | undefined;
  version: number;
  /** 1 (P1) .. 4 (P4). */
  priority: number;
  /** Absent or '' for an event from before projects existed. */
  projectId?: string;
  /** Absent: none. */
  labelIds?: string[];
}

/** Live tasks of one project or label. */
export interface GroupCount {
  id: string;
  open: number;
  completed: number;
}

export interface UserStats {
  created: number;
  completed: number;
  open: number;
  overdue: number;
  completionRate: number;
  currentStreakDays: number;
  /** Epoch ms of the newest event folded for this user; undefined when none was. */
  asOfMs: number | undefined;
  /** Live tasks per priority (1..4), P1 first; priorities without tasks left out. */
  byPriority: { priority: number; open: number; completed: number }[];
  /** Live tasks per project id (tasks without a known project left out), by id. */
  byProject: GroupCount[];
  /** Live tasks per label id, by id. */
  byLabel: GroupCount[];
}

/** What applying one event did (for logs and tests). */
export type FoldResult = "applied" | "stale" | "user-deleted";

interface TaskRow {
  id: number;
  user_id: string;
  version: number;
  deleted: number;
}

/** SQL of the analytics database. Every method is synchronous, so it runs inside the inbox transaction. */
export class AnalyticsStore {
  readonly #generation: string;
  readonly #taskRow;
  readonly #insertTask;
  readonly #updateTask;
  readonly #isDeletedUser;
  readonly #touchUser;
  readonly #setTimeZone;
  readonly #user;
  readonly #counts;
  readonly #byPriority;
  readonly #completions;
  readonly #purgeTasks;
  readonly #purgeUser;
  readonly #tombstoneUser;
  readonly #unlinkTask;
  readonly #link;
  readonly #isDeletedLabel;
  readonly #deleteLabel;
  readonly #forgetLabel;
  readonly #purgeLabels;
  readonly #own;
  readonly #disown;
  readonly #owns;
  readonly #byProject;
  readonly #byLabel;
  readonly #index: TaskSearch;

  /** The per-user audit log (audit-log.ts). */
  readonly #audit: AuditLog;

  constructor(db: Db) {
    this.#audit = new AuditLog(db);
    this.#index = new TaskSearch(db);
    db.prepare("INSERT INTO meta (key, value) VALUES ('generation', ?) ON CONFLICT DO NOTHING").run(
      randomBytes(4).toString("hex"),
    );
    this.#generation = db.prepare("SELECT value FROM meta WHERE key = 'generation'").pluck().get() as string;
    this.#taskRow = db.prepare<[string], TaskRow>("SELECT id, user_id, version, deleted FROM tasks WHERE task_id = ?");
    this.#insertTask = db.prepare(
      `INSERT INTO tasks (task_id, user_id, title, notes, status, due_ms, completed_ms, version, deleted, priority,
         project_id)
       VALUES (@taskId, @userId, @title, @notes, @status, @dueMs, @completedMs, @version, @deleted, @priority,
         @projectId)`,
    );
    this.#updateTask = db.prepare(
      `UPDATE tasks SET user_id = @userId, title = @title, notes = @notes, status = @status, due_ms = @dueMs,
         completed_ms = @completedMs, version = @version, deleted = @deleted, priority = @priority,
         project_id = @projectId
       WHERE task_id = @taskId`,
    );
    this.#isDeletedUser = db.prepare("SELECT 1 FROM deleted_users WHERE user_id = ?").pluck();
    this.#touchUser = db.prepare(
      `INSERT INTO users (user_id, as_of_ms) VALUES (?, ?)
       ON CONFLICT (user_id) DO UPDATE SET as_of_ms = max(coalesce(as_of_ms, 0), excluded.as_of_ms)`,
    );
    this.#setTimeZone = db.prepare("UPDATE users SET time_zone = ? WHERE user_id = ?");
    this.#user = db.prepare<[string], { time_zone: string | null; as_of_ms: number | null }>(
      "SELECT time_zone, as_of_ms FROM users WHERE user_id = ?",
    );
    this.#counts = db.prepare<[number, string], { created: number; completed: number; open: number; overdue: number }>(
      `SELECT count(*) AS created,
              coalesce(sum(status = 'completed'), 0) AS completed,
              coalesce(sum(status = 'open'), 0) AS open,
              coalesce(sum(status = 'open' AND due_ms IS NOT NULL AND due_ms < ?), 0) AS overdue
       FROM tasks WHERE user_id = ? AND deleted = 0`,
    );
    this.#byPriority = db.prepare<[string], { priority: number; open: number; completed: number }>(
      `SELECT priority, coalesce(sum(status = 'open'), 0) AS open, coalesce(sum(status = 'completed'), 0) AS completed
       FROM tasks WHERE user_id = ? AND deleted = 0 GROUP BY priority ORDER BY priority`,
    );
    this.#completions = db
      .prepare<[string], number>(
        `SELECT completed_ms FROM tasks
         WHERE user_id = ? AND deleted = 0 AND status = 'completed' AND completed_ms IS NOT NULL`,
      )
      .pluck();
    this.#unlinkTask = db.prepare("DELETE FROM task_labels WHERE task_row = ?");
    this.#link = db.prepare("INSERT OR IGNORE INTO task_labels (task_row, label_id, user_id) VALUES (?, ?, ?)");
    this.#isDeletedLabel = db.prepare("SELECT 1 FROM deleted_labels WHERE label_id = ?").pluck();
    this.#deleteLabel = db.prepare("DELETE FROM task_labels WHERE label_id = ? AND user_id = ?");
    this.#forgetLabel = db.prepare(
      "INSERT INTO deleted_labels (label_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
    );
    this.#purgeLabels = [
      db.prepare("DELETE FROM task_labels WHERE user_id = ?"),
      db.prepare("DELETE FROM deleted_labels WHERE user_id = ?"),
      db.prepare("DELETE FROM owned WHERE user_id = ?"),
    ];
    this.#own = db.prepare("INSERT INTO owned (id, kind, user_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING");
    this.#disown = db.prepare("DELETE FROM owned WHERE id = ? AND user_id = ?");
    this.#owns = db.prepare("SELECT 1 FROM owned WHERE id = ? AND kind = ? AND user_id = ?").pluck();
    this.#byProject = db.prepare<[string], { id: string; open: number; completed: number }>(
      `SELECT project_id AS id, coalesce(sum(status = 'open'), 0) AS open,
              coalesce(sum(status = 'completed'), 0) AS completed
       FROM tasks WHERE user_id = ? AND deleted = 0 AND project_id != '' GROUP BY project_id ORDER BY project_id`,
    );
    this.#byLabel = db.prepare<[string], { id: string; open: number; completed: number }>(
      `SELECT l.label_id AS id, coalesce(sum(t.status = 'open'), 0) AS open,
              coalesce(sum(t.status = 'completed'), 0) AS completed
       FROM task_labels l JOIN tasks t ON t.id = l.task_row
       WHERE l.user_id = ? AND t.deleted = 0 GROUP BY l.label_id ORDER BY l.label_id`,
    );
    this.#purgeTasks = db.prepare("DELETE FROM tasks WHERE user_id = ?");
    this.#purgeUser = db.prepare("DELETE FROM users WHERE user_id = ?");
    this.#tombstoneUser = db.prepare(
      "INSERT INTO deleted_users (user_id, deleted_at_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
    );
  }

  /**
   * A random id made when the database was created. Durable consumer names include it, so a new
   * database (a rebuilt one, or a lost file) gets its own consumers that start at the beginning of
   * each stream, and the inbox skips whatever this database has already folded.
   */
  get generation(): string {
    return this.#generation;
  }

  /**
   * Folds the task as of `facts.version`, unless a version at least as new (or its deletion) is
   * already here: events of one task can arrive out of order or twice, and the highest version wins.
   */
  upsertTask(facts: TaskFacts, eventMs: number): FoldResult {
    if (this.#isDeletedUser.get(facts.userId)) return "user-deleted";
    this.#touchUser.run(facts.userId, eventMs);
    const row = this.#taskRow.get(facts.taskId);
    if (row && row.version >= facts.version) return "stale";
    const values = {
      ...facts,
      dueMs: facts.dueMs ?? null,
      completedMs: facts.completedMs ?? null,
      deleted: 0,
      projectId: facts.projectId ?? "",
      labelIds: undefined,
    };
    let rowid: number;
    if (row) {
      this.#updateTask.run(values);
      this.#index.remove(row.user_id, row.id);
      rowid = row.id;
    } else {
      rowid = Number(this.#insertTask.run(values).lastInsertRowid);
    }
    this.#index.put(facts.userId, rowid, facts.title, facts.notes);
    this.#unlinkTask.run(rowid);
    if (facts.projectId) this.#own.run(facts.projectId, "project", facts.userId);
    for (const l of facts.labelIds ?? [])
      if (!this.#isDeletedLabel.get(l)) {
        this.#link.run(rowid, l, facts.userId);
        this.#own.run(l, "label", facts.userId);
      }
    return "applied";
  }

  /** A project or label created (project.created, label.created): the id is the user's from now on. */
  recordOwner(kind: "project" | "label", id: string, userId: string, eventMs: number): FoldResult {
    if (this.#isDeletedUser.get(userId)) return "user-deleted";
    this.#touchUser.run(userId, eventMs);
    if (kind === "label" && this.#isDeletedLabel.get(id)) return "stale";
    this.#own.run(id, kind, userId);
    return "applied";
  }

  /** A project deleted (its tasks' deletions came first): its id is no longer the user's. */
  dropProject(id: string, userId: string, eventMs: number): FoldResult {
    if (this.#isDeletedUser.get(userId)) return "user-deleted";
    this.#touchUser.run(userId, eventMs);
    this.#disown.run(id, userId);
    return "applied";
  }

  /** True when `id` is a project (or label) of the user's, as far as the events folded so far tell. */
  owns(userId: string, kind: "project" | "label", id: string): boolean {
    return this.#owns.get(id, kind, userId) !== undefined;
  }

  /**
   * A label deleted: it leaves every task of the user's at once (tasks send no event per task)
   * and is remembered, so no later fold brings it back. Repeating it changes nothing.
   */
  deleteLabel(labelId: string, userId: string, eventMs: number): FoldResult {
    if (this.#isDeletedUser.get(userId)) return "user-deleted";
    this.#touchUser.run(userId, eventMs);
    this.#deleteLabel.run(labelId, userId);
    this.#forgetLabel.run(labelId, userId);
    this.#disown.run(labelId, userId);
    return "applied";
  }

  /** Marks the task deleted at `version` (a tombstone, also when it was never seen) and drops it from search. */
  deleteTask(taskId: string, userId: string, version: number, eventMs: number): FoldResult {
    const row = this.#taskRow.get(taskId);
    // The row knows the owner even if the event left user_id out.
    const owner = row?.user_id || userId;
    if (this.#isDeletedUser.get(owner)) return "user-deleted";
    this.#touchUser.run(owner, eventMs);
    if (row && row.version >= version) return "stale";
    const tombstone = {
      taskId,
      userId: owner,
      title: "",
      notes: "",
      status: "open",
      dueMs: null,
      completedMs: null,
      version,
      deleted: 1,
      priority: 4,
      projectId: "",
    };
    if (row) {
      this.#updateTask.run(tombstone);
      this.#index.remove(row.user_id, row.id);
      this.#unlinkTask.run(row.id);
    } else {
      this.#insertTask.run(tombstone);
    }
    return "applied";
  }

  /** Records the user's time zone (from user.registered). */
  registerUser(userId: string, timeZone: string, eventMs: number): FoldResult {
    if (this.#isDeletedUser.get(userId)) return "user-deleted";
    this.#touchUser.run(userId, eventMs);
    this.#setTimeZone.run(timeZone || null, userId);
    return "applied";
  }

  /** Appends an audit entry, unless its user was deleted (a late event must not bring data back). */
  appendAudit(entry: AuditEntry): FoldResult {
    if (this.#isDeletedUser.get(entry.userId)) return "user-deleted";
    this.#audit.append(entry);
    return "applied";
  }

  /** A page of the user's audit log, newest first (AuditLog.page). */
  auditPage(userId: string, limit: number, cursor: Parameters<AuditLog["page"]>[2]): ReturnType<AuditLog["page"]> {
    return this.#audit.page(userId, limit, cursor);
  }

  /** Drops every row of the user (audit log included) and remembers the deletion. Returns the number of task rows dropped. */
  purgeUser(userId: string, eventMs: number): number {
    this.#audit.purgeUser(userId);
    this.#index.purge(userId);
    for (const stmt of this.#purgeLabels) stmt.run(userId);
    const n = this.#purgeTasks.run(userId).changes;
    this.#purgeUser.run(userId);
    this.#tombstoneUser.run(userId, eventMs);
    return n;
  }

  /** The user's numbers as of `nowMs` (overdue = open with a due time before now; streak in the user's zone). */
  stats(userId: string, nowMs: number): UserStats {
    const c = this.#counts.get(nowMs, userId) ?? { created: 0, completed: 0, open: 0, overdue: 0 };
    const user = this.#user.get(userId);
    return {
      created: c.created,
      completed: c.completed,
      open: c.open,
      overdue: c.overdue,
      completionRate: c.created === 0 ? 0 : c.completed / c.created,
      currentStreakDays: currentStreak(this.#completions.all(userId), nowMs, safeTimeZone(user?.time_zone)),
      asOfMs: user?.as_of_ms ?? undefined,
      byPriority: this.#byPriority.all(userId),
      byProject: this.#byProject.all(userId),
      byLabel: this.#byLabel.all(userId),
    };
  }

  /** The user's live tasks matching an FTS5 expression (see ftsQuery), best first (TaskSearch.search). */
  search(userId: string, match: string, limit: number, filter: SearchFilter = {}): SearchHitRow[] {
    return this.#index.search(userId, match, limit, filter);
  }
}
