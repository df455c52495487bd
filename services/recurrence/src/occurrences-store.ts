import { type Db, inboxMigration, type Migration } from "@taskmesh/platform";
import type { Statement } from "better-sqlite3";

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "processed occurrences",
    sql: `
      -- One row per occurrence this service had tasks create, written in the inbox transaction
      -- of the task.completed event that caused it.
      CREATE TABLE processed_occurrences (
        idempotency_key   TEXT PRIMARY KEY,  -- sent to CreateOccurrence: hash(parent id, occurrence instant)
        user_id           TEXT NOT NULL,
        parent_task_id    TEXT NOT NULL,     -- the completed task
        due_time          INTEGER NOT NULL,  -- the occurrence's instant, epoch ms
        child_task_id     TEXT NOT NULL,     -- the task tasks created
        -- 'existed': tasks already had this key (a redelivery after a crash before our commit)
        outcome           TEXT NOT NULL CHECK (outcome IN ('created', 'existed')),
        -- The series the child belongs to, so completing the child continues it: DTSTART (the
        -- first occurrence's due time; COUNT is counted from it) and the rule and zone it was
        -- expanded with.
        series_start      INTEGER NOT NULL,
        recurrence_rule   TEXT NOT NULL,
        time_zone         TEXT NOT NULL,
        event_id          TEXT NOT NULL,
        processed_at      TEXT NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE UNIQUE INDEX processed_by_child ON processed_occurrences (child_task_id);
      CREATE INDEX processed_by_user ON processed_occurrences (user_id);
    `,
  },
  inboxMigration(2),
];

export type Outcome = "created" | "existed";

export interface ProcessedOccurrence {
  idempotencyKey: string;
  userId: string;
  parentTaskId: string;
  dueTime: number;
  childTaskId: string;
  outcome: Outcome;
  seriesStart: number;
  recurrenceRule: string;
  timeZone: string;
  eventId: string;
}

export interface SeriesAnchor {
  seriesStart: number;
  recurrenceRule: string;
  timeZone: string;
}

/** SQL for the recurrence service's own database: the occurrences it has created. */
export class OccurrencesStore {
  readonly #insert: Statement;
  readonly #byKey: Statement<[string]>;
  readonly #anchor: Statement<[string, string]>;
  readonly #forParent: Statement<[string]>;
  readonly #purge: Statement<[string]>;

  constructor(readonly db: Db) {
    this.#insert = db.prepare(`
      INSERT INTO processed_occurrences (idempotency_key, user_id, parent_task_id, due_time, child_task_id,
        outcome, series_start, recurrence_rule, time_zone, event_id, processed_at)
      VALUES (@idempotencyKey, @userId, @parentTaskId, @dueTime, @childTaskId,
        @outcome, @seriesStart, @recurrenceRule, @timeZone, @eventId, @processedAt)
      ON CONFLICT DO NOTHING`);
    this.#byKey = db.prepare("SELECT idempotency_key FROM processed_occurrences WHERE idempotency_key = ?").pluck();
    this.#anchor = db.prepare(`
      SELECT series_start AS seriesStart, recurrence_rule AS recurrenceRule, time_zone AS timeZone
      FROM processed_occurrences WHERE child_task_id = ? AND user_id = ?`);
    this.#forParent = db.prepare(`
      SELECT idempotency_key AS idempotencyKey, user_id AS userId, parent_task_id AS parentTaskId,
        due_time AS dueTime, child_task_id AS childTaskId, outcome, series_start AS seriesStart,
        recurrence_rule AS recurrenceRule, time_zone AS timeZone, event_id AS eventId
      FROM processed_occurrences WHERE parent_task_id = ? ORDER BY due_time`);
    this.#purge = db.prepare("DELETE FROM processed_occurrences WHERE user_id = ?");
  }

  /**
   * Records an occurrence (call inside the inbox transaction). A second record for the same key
   * (the same completion delivered as two events) is ignored. Returns true if it was new.
   */
  record(o: ProcessedOccurrence): boolean {
    return this.#insert.run({ ...o, processedAt: new Date().toISOString() }).changes === 1;
  }

  has(idempotencyKey: string): boolean {
    return this.#byKey.get(idempotencyKey) !== undefined;
  }

  /** The series a task this service created belongs to, if it created it. */
  anchorOf(childTaskId: string, userId: string): SeriesAnchor | undefined {
    return this.#anchor.get(childTaskId, userId) as SeriesAnchor | undefined;
  }

  /** Occurrences created after `parentTaskId` was completed (normally at most one). */
  forParent(parentTaskId: string): ProcessedOccurrence[] {
    return this.#forParent.all(parentTaskId) as ProcessedOccurrence[];
  }

  /** Drops every row of a user (account deletion). Returns how many. */
  purgeUser(userId: string): number {
    return this.#purge.run(userId).changes;
  }
}
