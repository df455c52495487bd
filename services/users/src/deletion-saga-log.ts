import { randomUUID } from "node:crypto";
import type { Db } from "@taskmesh/platform";

/**
 * The durable log of account-deletion sagas, in the users database (migration 3 of users-store).
 *
 * `deletion_sagas` holds each saga's current position (one row per saga, updated in place);
 * `deletion_saga_log` is append-only, one row per step transition, written in the same transaction
 * as the position (and, for local steps, as the step's own effect). The orchestrator resumes from
 * `deletion_sagas`; the log is the history an operator reads ("what happened to this deletion?").
 *
 * The saga rows outlive the account on purpose: they hold ids only (no email, no password), and
 * they are how a caller learns that the deletion completed.
 */
export const DELETION_SAGA_SQL = `
CREATE TABLE deletion_sagas (
  id              TEXT PRIMARY KEY,
  user_id         TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('RUNNING', 'COMPENSATING', 'COMPLETED', 'COMPENSATED')),
  step            TEXT NOT NULL,
  step_started_at INTEGER NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT,
  reason          TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
) STRICT;
-- At most one unfinished deletion per user: a second DeleteAccount returns the running one.
CREATE UNIQUE INDEX deletion_sagas_one_active ON deletion_sagas(user_id) WHERE state IN ('RUNNING', 'COMPENSATING');
CREATE INDEX deletion_sagas_unfinished ON deletion_sagas(state) WHERE state IN ('RUNNING', 'COMPENSATING');
CREATE TABLE deletion_saga_log (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  saga_id    TEXT NOT NULL REFERENCES deletion_sagas(id),
  user_id    TEXT NOT NULL,
  step       TEXT NOT NULL,
  state      TEXT NOT NULL,
  attempts   INTEGER NOT NULL,
  error      TEXT,
  at         INTEGER NOT NULL
) STRICT;
CREATE INDEX deletion_saga_log_by_saga ON deletion_saga_log(saga_id, seq);
`;

export type SagaState = "RUNNING" | "COMPENSATING" | "COMPLETED" | "COMPENSATED";

/**
 * What happened to a step, one log row each: `started` (it became the current step), `retrying`
 * (an attempt failed with a retriable error), `succeeded`, `failed` (permanently: the saga
 * compensates), `compensated` (its compensation ran), `irreversible` (it has no compensation: its
 * effect stays), `completed` / `compensated_saga` (the saga's terminal transition, step "saga").
 */
export type StepTransition =
  | "started"
  | "retrying"
  | "succeeded"
  | "failed"
  | "compensated"
  | "irreversible"
  | "completed"
  | "compensated_saga";

export interface SagaRecord {
  id: string;
  userId: string;
  state: SagaState;
  /** The step running, or the last one run when terminal. */
  step: string;
  /** When the current step was first started (ms); its retry budget counts from here. */
  stepStartedAt: number;
  /** Attempts of the current step so far (across restarts). */
  attempts: number;
  lastError: string | undefined;
  /** Why the saga was compensated. */
  reason: string | undefined;
  createdAt: number;
  updatedAt: number;
}

export interface LogEntry {
  step: string;
  state: StepTransition;
  attempts: number;
  error: string | undefined;
  at: number;
}

interface SagaRow {
  id: string;
  user_id: string;
  state: SagaState;
  step: string;
  step_started_at: number;
  attempts: number;
  last_error: string | null;
  reason: string | null;
  created_at: number;
  updated_at: number;
}

const COLUMNS =
  "id, user_id, state, step, step_started_at, attempts, last_error, reason, created_at, updated_at FROM deletion_sagas";

/** Reads and writes the saga log. Every write is one transaction (nested in the caller's, if any). */
export class DeletionSagaLog {
  readonly db: Db;
  readonly #sql;

  constructor(db: Db) {
    this.db = db;
    this.#sql = {
      insert: db.prepare(
        `INSERT INTO deletion_sagas (id, user_id, state, step, step_started_at, attempts, created_at, updated_at)
         VALUES (@id, @userId, 'RUNNING', @step, @now, 0, @now, @now)`,
      ),
      byId: db.prepare<[string], SagaRow>(`SELECT ${COLUMNS} WHERE id = ?`),
      active: db.prepare<[string], SagaRow>(
        `SELECT ${COLUMNS} WHERE user_id = ? AND state IN ('RUNNING', 'COMPENSATING')`,
      ),
      unfinished: db.prepare<[], SagaRow>(
        `SELECT ${COLUMNS} WHERE state IN ('RUNNING', 'COMPENSATING') ORDER BY created_at`,
      ),
      update: db.prepare(
        `UPDATE deletion_sagas SET state = @state, step = @step, step_started_at = @stepStartedAt,
         attempts = @attempts, last_error = @lastError, reason = @reason, updated_at = @now WHERE id = @id`,
      ),
      append: db.prepare(
        `INSERT INTO deletion_saga_log (saga_id, user_id, step, state, attempts, error, at)
         VALUES (@sagaId, @userId, @step, @state, @attempts, @error, @at)`,
      ),
      history: db.prepare<
        [string],
        { step: string; state: StepTransition; attempts: number; error: string | null; at: number }
      >("SELECT step, state, attempts, error, at FROM deletion_saga_log WHERE saga_id = ? ORDER BY seq"),
    };
  }

  /**
   * The user's unfinished saga, or a new one at `firstStep` (state RUNNING, log row `started`).
   * The check and the insert are one IMMEDIATE transaction, and a unique partial index backs it,
   * so two concurrent requests cannot start two deletions of one user.
   */
  startOrGet(
    userId: string,
    firstStep: string,
    now: number,
    onCreated?: (saga: SagaRecord) => void,
  ): { saga: SagaRecord; created: boolean } {
    return this.db
      .transaction(() => {
        const running = this.#sql.active.get(userId);
        if (running) return { saga: toRecord(running), created: false };
        const id = randomUUID();
        this.#sql.insert.run({ id, userId, step: firstStep, now });
        this.#append(id, userId, firstStep, "started", 0, undefined, now);
        const saga = toRecord(this.#sql.byId.get(id) as SagaRow);
        // In the same transaction: e.g. the user.deletion_requested event is in the outbox iff the saga exists.
        onCreated?.(saga);
        return { saga, created: true };
      })
      .immediate();
  }

  get(id: string): SagaRecord | undefined {
    const row = this.#sql.byId.get(id);
    return row && toRecord(row);
  }

  /** Sagas in RUNNING or COMPENSATING, oldest first: what a starting orchestrator resumes. */
  unfinished(): SagaRecord[] {
    return this.#sql.unfinished.all().map(toRecord);
  }

  /** The step transitions of a saga, in order. */
  history(id: string): LogEntry[] {
    return this.#sql.history
      .all(id)
      .map((r) => ({ step: r.step, state: r.state, attempts: r.attempts, error: r.error ?? undefined, at: r.at }));
  }

  /** An attempt of the current step is about to run: counted before it runs, so a crash mid-call still counts it. */
  countAttempt(saga: SagaRecord, now: number): SagaRecord {
    return this.#write({ ...saga, attempts: saga.attempts + 1 }, now);
  }

  /** The current attempt failed with a retriable error; the step stays current. */
  retrying(saga: SagaRecord, error: string, now: number): SagaRecord {
    return this.db.transaction(() => {
      this.#append(saga.id, saga.userId, saga.step, "retrying", saga.attempts, error, now);
      return this.#write({ ...saga, lastError: error }, now);
    })();
  }

  /**
   * The current step succeeded: log it and make `next` current (log `started`), or, with no next
   * step, end the saga COMPLETED. `effect` (a local step's own change) runs in the same transaction.
   */
  succeeded(saga: SagaRecord, next: string | undefined, now: number, effect?: () => void): SagaRecord {
    return this.db.transaction(() => {
      effect?.();
      this.#append(saga.id, saga.userId, saga.step, "succeeded", saga.attempts, undefined, now);
      if (next === undefined) {
        this.#append(saga.id, saga.userId, "saga", "completed", 0, undefined, now);
        return this.#write({ ...saga, state: "COMPLETED", lastError: undefined }, now);
      }
      this.#append(saga.id, saga.userId, next, "started", 0, undefined, now);
      return this.#write({ ...saga, step: next, stepStartedAt: now, attempts: 0, lastError: undefined }, now);
    })();
  }

  /** The current step failed for good: the saga turns to COMPENSATING with `reason`. */
  failed(saga: SagaRecord, error: string, reason: string, now: number): SagaRecord {
    return this.db.transaction(() => {
      this.#append(saga.id, saga.userId, saga.step, "failed", saga.attempts, error, now);
      return this.#write({ ...saga, state: "COMPENSATING", lastError: error, reason }, now);
    })();
  }

  /**
   * Compensation: `steps` (completed, newest first) are logged `compensated` (after `compensate`
   * ran for them) or `irreversible`, and the saga ends COMPENSATED, all in one transaction.
   */
  compensated(
    saga: SagaRecord,
    steps: readonly { step: string; compensate: (() => void) | undefined }[],
    reason: string,
    now: number,
  ): SagaRecord {
    return this.db.transaction(() => {
      for (const s of steps) {
        s.compensate?.();
        this.#append(saga.id, saga.userId, s.step, s.compensate ? "compensated" : "irreversible", 0, undefined, now);
      }
      this.#append(saga.id, saga.userId, "saga", "compensated_saga", 0, reason, now);
      return this.#write({ ...saga, state: "COMPENSATED", reason }, now);
    })();
  }

  /** Steps logged `succeeded` for the saga, in the order they succeeded. */
  succeededSteps(id: string): string[] {
    return this.history(id)
      .filter((e) => e.state === "succeeded")
      .map((e) => e.step);
  }

  #append(
    sagaId: string,
    userId: string,
    step: string,
    state: StepTransition,
    attempts: number,
    error: string | undefined,
    at: number,
  ): void {
    this.#sql.append.run({ sagaId, userId, step, state, attempts, error: error ?? null, at });
  }

  #write(saga: SagaRecord, now: number): SagaRecord {
    this.#sql.update.run({
      id: saga.id,
      state: saga.state,
      step: saga.step,
      stepStartedAt: saga.stepStartedAt,
      attempts: saga.attempts,
      lastError: saga.lastError ?? null,
      reason: saga.reason ?? null,
      now,
    });
    return { ...saga, updatedAt: now };
  }
}

function toRecord(r: SagaRow): SagaRecord {
  return {
    id: r.id,
    userId: r.user_id,
    state: r.state,
    step: r.step,
    stepStartedAt: r.step_started_at,
    attempts: r.attempts,
    lastError: r.last_error ?? undefined,
    reason: r.reason ?? undefined,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
