import { headers, type JetStreamClient, type JetStreamManager, NatsError } from "nats";
import type { Db } from "../db/database.js";
import type { Logger } from "../log/logger.js";
import { platformInstruments } from "../telemetry/metrics.js";
import { sleep } from "./backoff.js";
import type { NatsLink } from "./nats-link.js";
import type { StreamSpec } from "./streams.js";

export interface OutboxReconcilerOptions {
  db: Db;
  link: NatsLink;
  logger: Logger;
  /** The streams the relay publishes to (a row's stream is the one whose subjects take its subject). */
  streams: readonly StreamSpec[];
  /** How far back published events are checked, ms (the relay keeps published rows 24 h). @default 600000 */
  horizonMs?: number;
  /** Pause between passes, ms. @default 10000 */
  intervalMs?: number;
  /** Rows checked per pass at most: one JetStream direct get each. @default 100 */
  batchSize?: number;
}

/** The defaults of OutboxReconcilerOptions, resolved once in the constructor. */
export const OUTBOX_RECONCILER_DEFAULTS: Readonly<
  Required<Pick<OutboxReconcilerOptions, "horizonMs" | "intervalMs" | "batchSize">>
> = { horizonMs: 600_000, intervalMs: 10_000, batchSize: 100 };

/** The column the relay records each PubAck's stream sequence in (a migration of each service). */
export function outboxStreamSeqMigration(version: number): { version: number; name: string; sql: string } {
  return { version, name: "outbox stream sequence", sql: "ALTER TABLE outbox ADD COLUMN stream_seq INTEGER;" };
}

interface CheckedRow {
  seq: number;
  eventId: string;
  subject: string;
  data: Uint8Array;
  traceparent: string | null;
  streamSeq: number;
}

/**
 * Finds events that JetStream acknowledged and then lost (a broker that fsyncs lazily and lost
 * power, a store restored from an older copy, a message deleted by hand) and publishes them again.
 *
 * Each pass reads up to `batchSize` rows published within `horizonMs`, continuing where the last
 * pass stopped, and asks the stream for the message at the sequence its PubAck gave. A row is
 * missing only when that sequence holds no message or another event's: then it is published
 * again and its new sequence recorded. An event the stream still holds is never republished.
 * The copy may arrive after newer events of the same aggregate; consumers already ignore what
 * is older than what they hold (versions) and what they applied (inbox by event id).
 *
 * A republish uses the event id as Nats-Msg-Id; if JetStream still remembers that id in its
 * duplicate window (a deleted message's id stays there) it is published under `<id>.r<n>`
 * instead: consumers deduplicate by the envelope's event id, not the header.
 */
export class OutboxReconciler {
  readonly #o: OutboxReconcilerOptions & typeof OUTBOX_RECONCILER_DEFAULTS;
  readonly #log: Logger;
  readonly #select;
  readonly #record;
  readonly #stopping = new AbortController();
  #cursor = 0;
  #loop: Promise<void> | undefined;
  readonly stats = { checked: 0, republished: 0 };

  constructor(opts: OutboxReconcilerOptions) {
    this.#o = { ...OUTBOX_RECONCILER_DEFAULTS, ...opts };
    this.#log = opts.logger.child({ component: "outbox-reconciler" });
    this.#select = opts.db.prepare(
      `SELECT seq, event_id AS eventId, subject, data, traceparent, stream_seq AS streamSeq FROM outbox
       WHERE published_at IS NOT NULL AND stream_seq IS NOT NULL AND published_at >= ? AND seq > ?
       ORDER BY seq LIMIT ?`,
    );
    this.#record = opts.db.prepare("UPDATE outbox SET stream_seq = ? WHERE seq = ?");
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopping.signal.aborted) {
      await sleep(this.#o.intervalMs, this.#stopping.signal);
      if (this.#stopping.signal.aborted || !this.#o.link.connected) continue;
      try {
        const r = await this.reconcileOnce();
        if (r.republished > 0) this.#log.warn(r, "republished events the stream had lost");
      } catch (err) {
        this.#log.warn({ err }, "outbox reconciliation pass failed; next pass retries");
      }
    }
  }

  /** One pass (see the class comment): how many rows were checked and how many republished. */
  async reconcileOnce(): Promise<{ checked: number; republished: number }> {
    const cutoff = new Date(Date.now() - this.#o.horizonMs).toISOString();
    const rows = this.#select.all(cutoff, this.#cursor, this.#o.batchSize) as CheckedRow[];
    // Next pass continues after these rows; at the end of the horizon it starts over.
    this.#cursor = rows.length < this.#o.batchSize ? 0 : (rows.at(-1)?.seq ?? 0);
    if (rows.length === 0) return { checked: 0, republished: 0 };
    const jsm = await this.#o.link.jetstreamManager();
    const js = await this.#o.link.jetstream();
    let republished = 0;
    for (const row of rows) {
      const stream = this.#streamOf(row.subject);
      if (!stream) continue;
      if (await this.#holds(jsm, stream, row.streamSeq, row.eventId)) continue;
      this.#record.run(await this.#republish(js, jsm, stream, row), row.seq);
      republished++;
    }
    const instruments = platformInstruments();
    instruments.outboxReconcileChecked.add(rows.length);
    if (republished > 0) instruments.outboxRepublished.add(republished);
    this.stats.checked += rows.length;
    this.stats.republished += republished;
    return { checked: rows.length, republished };
  }

  #streamOf(subject: string): string | undefined {
    return this.#o.streams.find((s) => s.subjects.some((p) => matches(p, subject)))?.name;
  }

  /** Whether `stream` holds, at `seq`, the message of `eventId` (a lookup error other than "no message" throws). */
  async #holds(jsm: JetStreamManager, stream: string, seq: number, eventId: string): Promise<boolean> {
    try {
      const m = await jsm.streams.getMessage(stream, { seq });
      const id = m.header.get("Nats-Msg-Id");
      return id === eventId || id.startsWith(`${eventId}.r`);
    } catch (err) {
      if (isNoMessage(err)) return false;
      throw err;
    }
  }

  async #republish(js: JetStreamClient, jsm: JetStreamManager, stream: string, row: CheckedRow): Promise<number> {
    const h = headers();
    if (row.traceparent) h.set("traceparent", row.traceparent);
    let ack = await js.publish(row.subject, row.data, { msgID: row.eventId, headers: h });
    // Still in the duplicate window: JetStream points at the original sequence. If that message
    // is really there after all, there is nothing to repair; otherwise publish under a new id.
    if (ack.duplicate && !(await this.#holds(jsm, stream, ack.seq, row.eventId))) {
      ack = await js.publish(row.subject, row.data, { msgID: `${row.eventId}.r${Date.now()}`, headers: h });
    }
    return ack.seq;
  }
}

/** NATS subject matching with `*` (one token) and `>` (the rest). */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** JetStream's "no message found" (10037), or a 404 on the get. */
function isNoMessage(err: unknown): boolean {
  return err instanceof NatsError && (err.api_error?.err_code === 10037 || err.code === "404");
}
