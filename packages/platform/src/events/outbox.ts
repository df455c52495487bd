import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import type { Statement } from "better-sqlite3";
import type { Db, Migration } from "../db/database.js";
import { activeTraceparent } from "../telemetry/trace-context.js";

/** Every event subject starts with this; an event of type "task.created" goes to `taskmesh.task.created`. */
export const SUBJECT_PREFIX = "taskmesh";

/**
 * The outbox: events waiting to be published, in commit order.
 *
 * `seq` is AUTOINCREMENT (not just the rowid) so a number is never reused even after rows are
 * pruned: the relay's order is the order of `seq`. The partial index keeps `backlog()` and the
 * relay's "next unpublished rows" query cheap however many published rows are kept.
 */
const OUTBOX_SQL = `
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  subject TEXT NOT NULL,
  data BLOB NOT NULL,
  traceparent TEXT,
  created_at TEXT NOT NULL,
  published_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox(seq) WHERE published_at IS NULL;
`;

/**
 * The outbox table as a migration for `openDatabase`. The service picks the version so it fits
 * into its own numbering: `openDatabase(path, [...storeMigrations, outboxMigration(3)])`.
 */
export function outboxMigration(version: number): Migration {
  return { version, name: "events outbox", sql: OUTBOX_SQL };
}

/** `taskmesh.<type>`, after checking that `type` is `<aggregate>.<event>` in lower case. */
export function eventSubject(type: string): string {
  if (!/^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/.test(type)) {
    throw new Error(`event type "${type}" is not "<aggregate>.<event>" in lower case (e.g. "task.created")`);
  }
  return `${SUBJECT_PREFIX}.${type}`;
}

export interface AppendOptions {
  /**
   * W3C `traceparent` the relay's publish continues (carried to consumers in the message header).
   * Default: the active span's, so an event appended while handling a request joins its trace.
   */
  traceparent?: string;
}

const appendStatements = new WeakMap<Db, Statement<[string, string, Buffer, string | null, string]>>();
const commitListeners = new WeakMap<Db, Set<() => void>>();
const wakeScheduled = new WeakSet<Db>();

/**
 * Writes `event` to the outbox. Call it INSIDE the `db.transaction` that makes the state change,
 * so the event exists if and only if the change committed. Returns the row's `seq`.
 *
 * Relays watching `db` are woken once the current synchronous transaction has finished
 * (better-sqlite3 transactions cannot span an await, so by the next macrotask it has either
 * committed or rolled back; a wake after a rollback finds nothing and costs one query).
 */
export function appendEvent(db: Db, event: Envelope, opts: AppendOptions = {}): number {
  if (!db.inTransaction) {
    throw new Error("appendEvent must run inside the db.transaction that makes the state change");
  }
  if (!event.id) throw new Error("event has no id");
  const subject = eventSubject(event.type);
  let insert = appendStatements.get(db);
  if (!insert) {
    insert = db.prepare<[string, string, Buffer, string | null, string]>(
      "INSERT INTO outbox (event_id, subject, data, traceparent, created_at) VALUES (?, ?, ?, ?, ?)",
    );
    appendStatements.set(db, insert);
  }
  const info = insert.run(
    event.id,
    subject,
    Buffer.from(toBinary(EnvelopeSchema, event)),
    opts.traceparent ?? activeTraceparent() ?? null,
    new Date().toISOString(),
  );
  scheduleWake(db);
  return Number(info.lastInsertRowid);
}

function scheduleWake(db: Db): void {
  if (wakeScheduled.has(db)) return;
  wakeScheduled.add(db);
  setImmediate(() => {
    wakeScheduled.delete(db);
    for (const l of commitListeners.get(db) ?? []) l();
  });
}

/** Calls `listener` shortly after each transaction that appended to `db`'s outbox. Returns an unsubscribe function. */
export function onOutboxAppend(db: Db, listener: () => void): () => void {
  let set = commitListeners.get(db);
  if (!set) {
    set = new Set();
    commitListeners.set(db, set);
  }
  set.add(listener);
  return () => set.delete(listener);
}

type Payload = Exclude<Envelope["payload"], { case: undefined }>;

export interface NewEvent {
  /** The user whose data this is. */
  userId: string;
  /** Id of the aggregate that changed (user id or task id). */
  aggregateId: string;
  /** e.g. `{ case: "taskCreated", value: create(TaskCreatedSchema, { task }) }`. */
  payload: Payload;
  /** Default: now. */
  occurredAt?: Date;
  /** Default: a random UUID. */
  id?: string;
}

/**
 * An Envelope with a fresh id, the time, and a `type` derived from the payload case
 * ("taskCreated" → "task.created", "reminderDue" → "reminder.due"), so type and payload cannot disagree.
 */
export function newEvent(e: NewEvent): Envelope {
  return create(EnvelopeSchema, {
    id: e.id ?? randomUUID(),
    type: eventType(e.payload.case),
    occurredAt: timestampFromDate(e.occurredAt ?? new Date()),
    userId: e.userId,
    aggregateId: e.aggregateId,
    payload: e.payload,
  });
}

/** "taskCreated" → "task.created": the aggregate is the first word, the event the rest in snake_case. */
export function eventType(payloadCase: string): string {
  const m = /^([a-z][a-z0-9]*)([A-Z].*)$/.exec(payloadCase);
  if (!m?.[1] || !m[2]) throw new Error(`cannot derive an event type from payload case "${payloadCase}"`);
  const rest = m[2].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
  return `${m[1]}.${rest}`;
}
