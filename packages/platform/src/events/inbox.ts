import type { Migration } from "../db/database.js";

/**
 * The inbox: ids of events a consumer has applied, written in the same transaction as the effect.
 * Keyed by (consumer, event_id) because one service may run several durable consumers on one
 * database and each must apply an event once.
 */
const INBOX_SQL = `
CREATE TABLE IF NOT EXISTS inbox (
  consumer TEXT NOT NULL,
  event_id TEXT NOT NULL,
  subject TEXT NOT NULL,
  processed_at TEXT NOT NULL,
  PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
`;

/**
 * The inbox table as a migration for `openDatabase`; the service picks the version so it fits its
 * own numbering: `openDatabase(path, [...storeMigrations, inboxMigration(4)])`.
 */
export function inboxMigration(version: number): Migration {
  return { version, name: "events inbox", sql: INBOX_SQL };
}
