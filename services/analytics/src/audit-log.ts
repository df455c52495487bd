import type { Db, Migration } from "@taskmesh/platform";

/**
 * The per-user audit log: one row per security-relevant or data-changing event, appended by the
 * event fold (inbox transaction, so a redelivered event adds nothing) and removed only when the
 * user is purged (user.deleted). Triggers refuse any UPDATE, so even a bug here cannot edit an
 * entry. Rebuilt by replay like every read model here.
 */
export const AUDIT_MIGRATION: Migration = {
  version: 10,
  name: "audit log",
  sql: `
    CREATE TABLE audit_events (
      seq         INTEGER PRIMARY KEY,
      event_id    TEXT NOT NULL UNIQUE,
      user_id     TEXT NOT NULL,
      action      INTEGER NOT NULL,
      occurred_ms INTEGER NOT NULL,
      ip_address  TEXT NOT NULL DEFAULT '',
      user_agent  TEXT NOT NULL DEFAULT '',
      session_id  TEXT NOT NULL DEFAULT '',
      resource_id TEXT NOT NULL DEFAULT ''
    ) STRICT;
    CREATE INDEX audit_events_by_user ON audit_events (user_id, occurred_ms DESC, seq DESC);
    CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
      BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
  `,
};

export interface AuditEntry {
  eventId: string;
  userId: string;
  /** taskmesh.analytics.v1.AuditAction number. */
  action: number;
  occurredMs: number;
  ipAddress: string;
  userAgent: string;
  sessionId: string;
  resourceId: string;
}

/** Where a page starts: after this (occurred_ms, seq), newest first. */
export interface AuditCursor {
  occurredMs: number;
  seq: number;
}

interface Row {
  seq: number;
  event_id: string;
  user_id: string;
  action: number;
  occurred_ms: number;
  ip_address: string;
  user_agent: string;
  session_id: string;
  resource_id: string;
}

export class AuditLog {
  readonly #insert;
  readonly #first;
  readonly #after;
  readonly #purge;

  constructor(db: Db) {
    this.#insert = db.prepare(
      `INSERT INTO audit_events (event_id, user_id, action, occurred_ms, ip_address, user_agent, session_id, resource_id)
       VALUES (@eventId, @userId, @action, @occurredMs, @ipAddress, @userAgent, @sessionId, @resourceId)
       ON CONFLICT (event_id) DO NOTHING`,
    );
    this.#first = db.prepare<[string, number], Row>(
      "SELECT * FROM audit_events WHERE user_id = ? ORDER BY occurred_ms DESC, seq DESC LIMIT ?",
    );
    this.#after = db.prepare<[string, number, number, number, number], Row>(
      `SELECT * FROM audit_events WHERE user_id = ? AND (occurred_ms < ? OR (occurred_ms = ? AND seq < ?))
       ORDER BY occurred_ms DESC, seq DESC LIMIT ?`,
    );
    this.#purge = db.prepare<[string]>("DELETE FROM audit_events WHERE user_id = ?");
  }

  /** Appends an entry (a second one with the same event id is ignored). */
  append(entry: AuditEntry): void {
    this.#insert.run(entry);
  }

  /** Up to `limit` entries of the user, newest first, after `cursor`; `next` is set when more may follow. */
  page(
    userId: string,
    limit: number,
    cursor: AuditCursor | undefined,
  ): { entries: (AuditEntry & { seq: number })[]; next: AuditCursor | undefined } {
    const rows = cursor
      ? this.#after.all(userId, cursor.occurredMs, cursor.occurredMs, cursor.seq, limit + 1)
      : this.#first.all(userId, limit + 1);
    const entries = rows.slice(0, limit).map(toEntry);
    const last = entries.at(-1);
    return { entries, next: rows.length > limit && last ? { occurredMs: last.occurredMs, seq: last.seq } : undefined };
  }

  /** Drops every entry of the user (user.deleted). */
  purgeUser(userId: string): number {
    return this.#purge.run(userId).changes;
  }
}

function toEntry(r: Row): AuditEntry & { seq: number } {
  return {
    seq: r.seq,
    eventId: r.event_id,
    userId: r.user_id,
    action: r.action,
    occurredMs: r.occurred_ms,
    ipAddress: r.ip_address,
    userAgent: r.user_agent,
    sessionId: r.session_id,
    resourceId: r.resource_id,
  };
}
