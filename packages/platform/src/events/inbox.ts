import type { Db, Migration } from "../db/database.js";
import { platformInstruments } from "../telemetry/metrics.js";

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

export interface InboxRetention {
  /**
   * Inbox rows older than this are deleted. Default 7 days. Must be at least twice the consumer's
   * redelivery horizon (checked); see InboxPruner for why that keeps exactly-once.
   */
  horizonMs?: number;
  /** Time between pruning passes. Default 60000 ms. */
  intervalMs?: number;
  /** Rows per DELETE; the event loop gets a turn between batches. Default 500. */
  batchSize?: number;
}

/** Default inbox retention: 7 days. */
export const DEFAULT_INBOX_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * Deletes one consumer's inbox rows older than the retention horizon, in small batches.
 *
 * Why exactly-once survives it: an event id can only reach the consumer again (1) as a JetStream
 * redelivery of a message whose ack was lost, or (2) as the producer's relay publishing the same
 * outbox row again after a crash between publish and mark. (2) within the stream's duplicate
 * window (2 min) is dropped by JetStream (same Nats-Msg-Id) before any consumer sees it; (1)
 * happens within the redelivery horizon (ack wait × deliveries + backoff, minutes) of the
 * consumer pulling, after which the message has been acked, or dead-lettered and terminated. So a
 * row is only needed for minutes after the effect; it is kept `horizonMs` (days), and no pass runs
 * until this process has itself consumed for a whole redelivery horizon, so messages left pending
 * by an outage longer than the horizon are redelivered (and found in the inbox) before their rows
 * can go. What is not covered: a producer whose relay stays down, mid-publish, longer than the
 * horizon and then republishes; keep the horizon above the longest outage you would repair.
 */
export class InboxPruner {
  readonly #delete: (cutoff: string, limit: number) => number;
  readonly #consumer: string;
  readonly #horizonMs: number;
  readonly #intervalMs: number;
  readonly #batchSize: number;
  readonly #notBefore: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(
    db: Db,
    consumer: string,
    redeliveryHorizonMs: number,
    opts: InboxRetention = {},
    now: () => number = Date.now,
  ) {
    this.#consumer = consumer;
    this.#horizonMs = opts.horizonMs ?? DEFAULT_INBOX_RETENTION_MS;
    if (this.#horizonMs < 2 * redeliveryHorizonMs)
      throw new Error(
        `inbox retention of ${consumer} (${this.#horizonMs} ms) must be at least twice its redelivery horizon (${redeliveryHorizonMs} ms)`,
      );
    this.#intervalMs = opts.intervalMs ?? 60_000;
    this.#batchSize = opts.batchSize ?? 500;
    this.#now = now;
    this.#notBefore = now() + redeliveryHorizonMs;
    // Not part of the inbox migration (shipped migrations are not edited): idempotent, and cheap
    // next to the table scan each pass would otherwise be.
    db.exec("CREATE INDEX IF NOT EXISTS inbox_by_age ON inbox (consumer, processed_at)");
    const stmt = db.prepare(
      `DELETE FROM inbox WHERE consumer = ? AND event_id IN
         (SELECT event_id FROM inbox WHERE consumer = ? AND processed_at < ? ORDER BY processed_at LIMIT ?)`,
    );
    this.#delete = (cutoff, limit) => stmt.run(consumer, consumer, cutoff, limit).changes;
  }

  /** Runs a pass every intervalMs (the first once this process has consumed for a redelivery horizon). */
  start(): void {
    this.#timer ??= setInterval(() => {
      if (this.#now() >= this.#notBefore) void this.prune();
    }, this.#intervalMs).unref();
  }

  /** Stops the passes and waits for one in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** Deletes every row past the horizon, batch by batch; resolves the number deleted. */
  prune(): Promise<number> {
    this.#running ??= this.#prune().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #prune(): Promise<number> {
    const cutoff = new Date(this.#now() - this.#horizonMs).toISOString();
    let total = 0;
    for (;;) {
      const n = this.#delete(cutoff, this.#batchSize);
      total += n;
      if (n > 0) platformInstruments().retentionPruned.add(n, { table: "inbox", consumer: this.#consumer });
      if (n < this.#batchSize) return total;
      await new Promise((r) => setImmediate(r)); // let calls and deliveries in between batches
    }
  }
}
