import { randomUUID } from "node:crypto";
import type { Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import {
  appendEvent,
  type Db,
  type Migration,
  openDatabase,
  outboxMigration,
  outboxStreamSeqMigration,
  pingDatabase,
} from "@taskmesh/platform";
import { DELETION_SAGA_SQL } from "./deletion-saga-log.js";
import { userDeleted, userRegistered } from "./events.js";
import { SESSIONS_MIGRATION } from "./session-store.js";

/** Notification preferences as stored; channel values are taskmesh.users.v1.NotificationChannel numbers. */
export interface StoredPreferences {
  /** IANA zone name; "" means UTC. */
  timeZone: string;
  channels: number[];
  /** Minutes after local midnight; undefined when the user set no quiet hours. */
  quietHours: { startMinute: number; endMinute: number } | undefined;
  webhookUrl: string;
}

export interface Account {
  id: string;
  /** Lower-cased at registration; unique. */
  email: string;
  passwordHash: string;
  createTime: Date;
  preferences: StoredPreferences;
  /**
   * Set while an account-deletion saga runs (step disable_account): the account cannot log in and
   * its tokens are refused here. Cleared by the saga's compensation.
   */
  disabledAt: Date | undefined;
}

export const DEFAULT_PREFERENCES: StoredPreferences = {
  timeZone: "",
  channels: [],
  quietHours: undefined,
  webhookUrl: "",
};

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "accounts and preferences",
    // email is stored lower-cased by the code; COLLATE NOCASE makes the uniqueness hold even for
    // a row written some other way (an operator's fix in the sqlite3 shell).
    sql: `
      CREATE TABLE accounts (
        id            TEXT PRIMARY KEY,
        email         TEXT NOT NULL COLLATE NOCASE UNIQUE,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE preferences (
        user_id      TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        time_zone    TEXT NOT NULL DEFAULT '',
        channels     TEXT NOT NULL DEFAULT '[]',
        quiet_start  INTEGER,
        quiet_end    INTEGER,
        webhook_url  TEXT NOT NULL DEFAULT '',
        updated_at   INTEGER NOT NULL
      ) STRICT;
    `,
  },
  // Events leave through the outbox, written in the transaction of the change (see events.ts).
  outboxMigration(2),
  {
    version: 3,
    name: "account disabling and the account-deletion saga log",
    sql: `ALTER TABLE accounts ADD COLUMN disabled_at INTEGER;\n${DELETION_SAGA_SQL}`,
  },
  outboxStreamSeqMigration(4),
  SESSIONS_MIGRATION,
];

/** Email as stored and looked up: lower case, so "Ada@Example.com" and "ada@example.com" are one account. */
export function normalizeEmail(email: string): string {
  return email.toLowerCase();
}

interface Row {
  id: string;
  email: string;
  password_hash: string;
  created_at: number;
  disabled_at: number | null;
  time_zone: string;
  channels: string;
  quiet_start: number | null;
  quiet_end: number | null;
  webhook_url: string;
}

const SELECT = `SELECT a.id, a.email, a.password_hash, a.created_at, a.disabled_at,
  p.time_zone, p.channels, p.quiet_start, p.quiet_end, p.webhook_url
  FROM accounts a JOIN preferences p ON p.user_id = a.id`;

function prepare(db: Db) {
  const insertAccount = db.prepare(
    "INSERT INTO accounts (id, email, password_hash, created_at) VALUES (@id, @email, @passwordHash, @createdAt)",
  );
  const insertPreferences = db.prepare("INSERT INTO preferences (user_id, updated_at) VALUES (?, ?)");
  return {
    byId: db.prepare<[string], Row>(`${SELECT} WHERE a.id = ?`),
    byEmail: db.prepare<[string], Row>(`${SELECT} WHERE a.email = ?`),
    updatePreferences: db.prepare(
      `UPDATE preferences SET time_zone = @timeZone, channels = @channels, quiet_start = @quietStart,
       quiet_end = @quietEnd, webhook_url = @webhookUrl, updated_at = @updatedAt WHERE user_id = @userId`,
    ),
    updateHash: db.prepare("UPDATE accounts SET password_hash = ? WHERE id = ?"),
    setDisabled: db.prepare<[number | null, string]>("UPDATE accounts SET disabled_at = ? WHERE id = ?"),
    deletePreferences: db.prepare<[string]>("DELETE FROM preferences WHERE user_id = ?"),
    deleteAccount: db.prepare<[string]>("DELETE FROM accounts WHERE id = ?"),
    deleteSessions: db.prepare<[string]>("DELETE FROM sessions WHERE user_id = ?"),
    unpublished: db.prepare("SELECT count(*) FROM outbox WHERE published_at IS NULL").pluck(),
    register: db.transaction(
      (account: { id: string; email: string; passwordHash: string; createdAt: number }, event: Envelope) => {
        insertAccount.run(account);
        insertPreferences.run(account.id, account.createdAt);
        appendEvent(db, event);
      },
    ),
  };
}

/** The users service's own database: accounts, password hashes and preferences. */
export class UsersStore {
  readonly db: Db;
  // Prepared once; better-sqlite3 re-uses the compiled statement on every call.
  readonly #sql: ReturnType<typeof prepare>;

  /** Opens (creating and migrating) the database at `path`. */
  static open(path: string): UsersStore {
    return new UsersStore(openDatabase(path, MIGRATIONS));
  }

  constructor(db: Db) {
    this.db = db;
    this.#sql = prepare(db);
  }

  /**
   * Creates an account with default preferences and its `user.registered` event (outbox) in one
   * transaction. Returns once committed (and, with synchronous=FULL, fsynced). A taken email
   * throws SQLITE_CONSTRAINT_UNIQUE and writes neither. The event carries the active span's trace
   * context (appendEvent's default): in the Register handler, the grpc-js SERVER span of the call.
   */
  createAccount(email: string, passwordHash: string, now: Date): Account {
    const account: Account = {
      id: randomUUID(),
      email: normalizeEmail(email),
      passwordHash,
      createTime: now,
      preferences: { ...DEFAULT_PREFERENCES },
      disabledAt: undefined,
    };
    const event = userRegistered({ id: account.id, email: account.email, timeZone: account.preferences.timeZone }, now);
    this.#sql.register({ id: account.id, email: account.email, passwordHash, createdAt: now.getTime() }, event);
    return account;
  }

  findById(id: string): Account | undefined {
    const row = this.#sql.byId.get(id);
    return row && toAccount(row);
  }

  findByEmail(email: string): Account | undefined {
    const row = this.#sql.byEmail.get(normalizeEmail(email));
    return row && toAccount(row);
  }

  /** Replaces the user's preferences (and appends `event`, if any, in the same transaction); false when there is no such user. */
  updatePreferences(userId: string, prefs: StoredPreferences, now: Date, event?: Envelope): boolean {
    return this.db.transaction(() => {
      const changed = this.#updatePreferences(userId, prefs, now);
      if (changed && event) appendEvent(this.db, event);
      return changed;
    })();
  }

  /** Appends one event to the outbox on its own (an audit fact with no state change, e.g. a failed login). */
  appendEvent(event: Envelope): void {
    this.db.transaction(() => appendEvent(this.db, event))();
  }

  /** Appends one event inside the caller's transaction (e.g. the deletion saga's creation). */
  appendEventInTransaction(event: Envelope): void {
    appendEvent(this.db, event);
  }

  #updatePreferences(userId: string, prefs: StoredPreferences, now: Date): boolean {
    const result = this.#sql.updatePreferences.run({
      userId,
      timeZone: prefs.timeZone,
      channels: JSON.stringify(prefs.channels),
      quietStart: prefs.quietHours?.startMinute ?? null,
      quietEnd: prefs.quietHours?.endMinute ?? null,
      webhookUrl: prefs.webhookUrl,
      updatedAt: now.getTime(),
    });
    return result.changes === 1;
  }

  /** Replaces a password hash (re-hash with current scrypt parameters after a successful login). */
  updatePasswordHash(userId: string, passwordHash: string): void {
    this.#sql.updateHash.run(passwordHash, userId);
  }

  /**
   * Marks the account disabled (`at`) or enabled again (undefined). False when there is no such
   * account. Idempotent: disabling a disabled account keeps the first time.
   */
  setDisabled(userId: string, at: Date | undefined): boolean {
    const current = this.#sql.byId.get(userId);
    if (!current) return false;
    if (at && current.disabled_at !== null) return true;
    this.#sql.setDisabled.run(at ? at.getTime() : null, userId);
    return true;
  }

  /**
   * Deletes the account, its preferences and sessions and appends `user.deleted` to the outbox. Call it
   * inside the transaction that also records the saga step, so the account is gone if and only if
   * the event will be published. The event is appended even if the account row is already gone:
   * consumers drop the user's data idempotently, a missing event would leave it behind.
   */
  deleteAccountWithEvent(userId: string, now: Date): void {
    if (!this.db.inTransaction) throw new Error("deleteAccountWithEvent must run inside a transaction");
    this.#sql.deletePreferences.run(userId);
    // The foreign key cascades too; said here so the account's sessions visibly go with it.
    this.#sql.deleteSessions.run(userId);
    this.#sql.deleteAccount.run(userId);
    appendEvent(this.db, userDeleted(userId, now));
  }

  /** Events in the outbox not yet acknowledged by JetStream. */
  unpublishedEvents(): number {
    return this.#sql.unpublished.get() as number;
  }

  ping(): boolean {
    return pingDatabase(this.db);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function toAccount(row: Row): Account {
  return {
    id: row.id,
    email: row.email,
    passwordHash: row.password_hash,
    createTime: new Date(row.created_at),
    disabledAt: row.disabled_at === null ? undefined : new Date(row.disabled_at),
    preferences: {
      timeZone: row.time_zone,
      channels: JSON.parse(row.channels) as number[],
      quietHours:
        row.quiet_start === null || row.quiet_end === null
          ? undefined
          : { startMinute: row.quiet_start, endMinute: row.quiet_end },
      webhookUrl: row.webhook_url,
    },
  };
}
