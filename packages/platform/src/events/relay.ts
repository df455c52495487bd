import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { headers, type JetStreamClient, NatsError, type PubAck } from "nats";
import type { Db } from "../db/database.js";
import type { WalSync } from "../db/wal-sync.js";
import type { Logger } from "../log/logger.js";
import { platformInstruments } from "../telemetry/metrics.js";
import { contextFromTraceparent, headerMapSetter } from "../telemetry/trace-context.js";
import { type BackoffOptions, backoffDelay, sleep } from "./backoff.js";
import type { NatsLink } from "./nats-link.js";
import { onOutboxAppend } from "./outbox.js";
import { ensureStreams, type StreamSpec } from "./streams.js";

/** An outbox row on its way to NATS. */
export interface OutboxRow {
  seq: number;
  eventId: string;
  subject: string;
  data: Uint8Array;
  traceparent: string | null;
}

export interface OutboxRelayOptions {
  db: Db;
  link: NatsLink;
  logger: Logger;
  /** Streams this service publishes to; created or updated before the first publish. */
  streams: readonly StreamSpec[];
  /** How often the outbox is checked even without a wake-up (rows left by a crashed predecessor, missed wakes), ms. @default 1000 */
  pollIntervalMs?: number;
  /** Rows read per query, and the most publishes awaiting their PubAck at once. @default 256 */
  batchSize?: number;
  /** Backoff after a failed publish. @default { initialMs: 200, maxMs: 10000 } */
  backoff?: BackoffOptions;
  /** How long published rows are kept (for inspection and the reconciler) before they are deleted, ms (24 h). @default 86_400_000 */
  keepPublishedMs?: number;
  /** How long `stop()` keeps publishing the backlog before it gives up (rows stay for the next start), ms. @default 5000 */
  drainTimeoutMs?: number;
  /**
   * Set when the service commits outbox rows through this WalSync (answering after its sync):
   * each pass then syncs first and publishes only rows committed before that sync, so no event
   * goes out for a commit a power cut could still take back. @default none (every commit is FULL)
   */
  walSync?: WalSync;
  /**
   * Fault injection for tests. `afterPubAck` runs between the PubAck and marking the row
   * published; throwing there leaves the row unpublished, exactly like a process killed at that point.
   */
  hooks?: { afterPubAck?: (row: OutboxRow, ack: PubAck) => void };
}

/** The defaults of OutboxRelayOptions, resolved once in the constructor. */
export const OUTBOX_RELAY_DEFAULTS: Readonly<
  Required<Pick<OutboxRelayOptions, "pollIntervalMs" | "batchSize" | "backoff" | "keepPublishedMs" | "drainTimeoutMs">>
> = {
  pollIntervalMs: 1000,
  batchSize: 256,
  backoff: { initialMs: 200, maxMs: 10_000 },
  keepPublishedMs: 86_400_000,
  drainTimeoutMs: 5000,
};

export interface RelayStats {
  /** Rows published and marked. */
  published: number;
  /** PubAcks that JetStream flagged as duplicates (a republish after a crash or a failed mark). */
  duplicates: number;
  /** Failed publish attempts. */
  failures: number;
}

/**
 * Publishes the outbox to JetStream in `seq` order: each row is sent with `Nats-Msg-Id` = event id
 * and marked published only after its PubAck. A crash between the two republishes the row on the
 * next start; JetStream's duplicate window drops the copy and the consumers' inbox absorbs anything
 * older.
 *
 * Rows go out in windows of up to `maxInFlight` publishes without waiting for each PubAck (one
 * round trip per window instead of per row); the acknowledged prefix of a window is marked in one
 * transaction (one fsync). Order holds with several in flight because row n+1 carries
 * `Nats-Expected-Last-Msg-Id` = row n's event id: if row n was not stored (a reconnect mid-window),
 * JetStream refuses n+1 and everything after it, so nothing overtakes a failed row, and the next
 * window starts again at row n. Another publisher to the same stream in between (reminders'
 * task.due, a replica's relay) also fails that check; the window then ends there and the next one
 * starts with the refused row (no expectation on a window's first row, whose predecessors are all
 * acknowledged). De-duplication comes before the check in nats-server, so a republish after a crash
 * gets duplicate PubAcks, not refusals.
 *
 * While NATS is down nothing is lost: rows wait, the relay waits for the link to reconnect and
 * backs off (exponential, jitter, capped) on publish errors.
 */
export class OutboxRelay {
  readonly #opts: OutboxRelayOptions & typeof OUTBOX_RELAY_DEFAULTS;
  readonly #log: Logger;
  readonly #select;
  readonly #lastSeq;
  readonly #mark;
  readonly #markAll;
  readonly #count;
  readonly #prune;
  readonly #stats: RelayStats = { published: 0, duplicates: 0, failures: 0 };
  #stopping = new AbortController();
  #wakeSignal = new AbortController();
  #woken = false;
  #loop: Promise<void> | undefined;
  #unsubscribe: (() => void)[] = [];
  #streamsReady = false;
  #lastPrune = 0;

  constructor(opts: OutboxRelayOptions) {
    this.#opts = { ...OUTBOX_RELAY_DEFAULTS, ...opts };
    this.#log = opts.logger.child({ component: "outbox-relay" });
    const db = opts.db;
    this.#select = db.prepare(
      "SELECT seq, event_id AS eventId, subject, data, traceparent FROM outbox WHERE published_at IS NULL AND seq <= ? ORDER BY seq LIMIT ?",
    );
    this.#lastSeq = db.prepare("SELECT coalesce(max(seq), 0) FROM outbox").pluck();
    // The PubAck's stream sequence goes with the mark when the outbox has the column (the
    // reconciler checks the stream against it; outboxStreamSeqMigration adds it).
    const hasStreamSeq = (db.prepare("SELECT 1 FROM pragma_table_info('outbox') WHERE name = 'stream_seq'").get() ??
      false) as unknown as boolean;
    this.#mark = hasStreamSeq
      ? db.prepare("UPDATE outbox SET published_at = ?, stream_seq = ? WHERE seq = ? AND published_at IS NULL")
      : db.prepare("UPDATE outbox SET published_at = ? WHERE seq = ? AND published_at IS NULL");
    const markAll = db.transaction((at: string, rows: readonly (readonly [OutboxRow, number])[]) => {
      for (const [row, streamSeq] of rows) {
        if (hasStreamSeq) this.#mark.run(at, streamSeq, row.seq);
        else this.#mark.run(at, row.seq);
      }
    });
    // A mark is the one write that may be lost at no cost: an unmarked row is published again,
    // and JetStream's duplicate window and the consumers' inboxes absorb it (the same path as a
    // crash between PubAck and mark). So it is committed without its own fsync (NORMAL in WAL mode
    // appends to the log unsynced; the next FULL commit syncs those frames too), which takes one
    // fsync per relay pass, i.e. per create at low rates, off the service's event loop.
    const level = Number(db.pragma("synchronous", { simple: true }));
    this.#markAll = (at: string, rows: readonly (readonly [OutboxRow, number])[]) => {
      if (level <= 1) return markAll(at, rows);
      db.pragma("synchronous = NORMAL");
      try {
        markAll(at, rows);
      } finally {
        db.pragma(`synchronous = ${level}`);
      }
    };
    this.#count = db.prepare("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").pluck();
    this.#prune = db.prepare("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < ?");
  }

  /** Starts publishing: at once (whatever a crashed predecessor left), after every outbox commit, and every poll interval. */
  start(): void {
    if (this.#loop) return;
    // taskmesh_outbox_backlog, read at scrape time (one indexed count).
    const gauge = platformInstruments().outboxBacklog;
    const observe = (r: { observe(v: number): void }) => r.observe(this.backlog());
    gauge.addCallback(observe);
    this.#unsubscribe.push(() => gauge.removeCallback(observe));
    this.#unsubscribe.push(onOutboxAppend(this.#opts.db, () => this.wake()));
    this.#unsubscribe.push(this.#opts.link.onConnect(() => this.wake()));
    this.#loop = this.#run();
  }

  /** Asks for a publish pass now (appendEvent does this by itself after the transaction). */
  wake(): void {
    this.#woken = true;
    this.#wakeSignal.abort();
  }

  /** Number of events not yet published. */
  backlog(): number {
    return this.#count.get() as number;
  }

  /** True while the NATS connection is up. */
  get connected(): boolean {
    return this.#opts.link.connected;
  }

  get stats(): Readonly<RelayStats> {
    return { ...this.#stats };
  }

  /**
   * Stops the relay: if NATS is connected it keeps publishing the backlog for up to
   * `drainTimeoutMs`, finishing the publish in flight; whatever remains waits in the outbox.
   */
  async stop(): Promise<void> {
    if (!this.#loop) return;
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
    this.#stopping.abort();
    this.wake();
    await this.#loop;
    this.#loop = undefined;
  }

  async #run(): Promise<void> {
    let failures = 0;
    for (;;) {
      if (this.#stopping.signal.aborted) {
        await this.#drain();
        return;
      }
      // A wake() from here on (even during the pass) makes the next idle return at once.
      this.#woken = false;
      this.#wakeSignal = new AbortController();
      const poll = this.#opts.pollIntervalMs;
      if (!this.#opts.link.connected) {
        const wake = this.#wakeSignal.signal;
        await Promise.race([sleep(poll, wake), this.#opts.link.whenConnected(wake)]);
        continue;
      }
      try {
        await this.#pass();
        failures = 0;
        this.#maybePrune();
      } catch (err) {
        failures++;
        this.#stats.failures++;
        this.#noteFailure(err);
        const delay = backoffDelay(failures, this.#opts.backoff);
        this.#log.warn(
          { err, attempt: failures, retryInMs: delay, backlog: this.backlog() },
          "outbox publish failed; backing off",
        );
        // Only stop() interrupts a backoff: wakes from new commits must not turn it into a hot loop.
        await sleep(delay, this.#stopping.signal);
        continue;
      }
      if (!this.#woken) await sleep(poll, this.#wakeSignal.signal);
    }
  }

  /** Publishes every unpublished row in order; throws on the first failure (the row stays). */
  async #pass(abandon?: AbortSignal): Promise<void> {
    const js = await this.#opts.link.jetstream();
    if (!this.#streamsReady) {
      await ensureStreams(await this.#opts.link.jetstreamManager(), this.#opts.streams);
      this.#streamsReady = true;
    }
    const batch = this.#opts.batchSize;
    for (;;) {
      if (abandon?.aborted) return;
      const rows = this.#select.all(await this.#durableSeq(), batch) as OutboxRow[];
      if (rows.length === 0) return;
      const sent = await this.#publishWindow(js, rows);
      // A window cut short by another publisher's message continues at once with the refused row.
      if (sent === rows.length && rows.length < batch) return;
    }
  }

  /** The last outbox seq that is on disk: every row without a WalSync, else those its sync covers. */
  async #durableSeq(): Promise<number> {
    const sync = this.#opts.walSync;
    if (!sync) return Number.MAX_SAFE_INTEGER;
    const last = this.#lastSeq.get() as number; // read before the sync starts, in the same tick
    await sync.sync();
    return last;
  }

  /**
   * Sends `rows` back to back, then takes their PubAcks in order and marks the acknowledged prefix
   * in one transaction. Returns how many were marked; throws on a failure other than the
   * expectation refused after another publisher's message (the failed row and the rest stay).
   */
  async #publishWindow(js: JetStreamClient, rows: OutboxRow[]): Promise<number> {
    const acks = rows.map((row, i) => this.#send(js, row, i > 0 ? rows[i - 1]?.eventId : undefined));
    const acked: (readonly [OutboxRow, number])[] = [];
    let failure: unknown;
    let refused = false;
    try {
      for (const [i, pending] of acks.entries()) {
        const row = rows[i] as OutboxRow;
        let ack: PubAck;
        try {
          ack = await pending;
        } catch (err) {
          // Row i was not stored; later rows expected it to be the last message, so they were refused too.
          refused = i > 0 && isWrongLastMsgId(err);
          failure = err;
          break;
        }
        this.#opts.hooks?.afterPubAck?.(row, ack); // fault injection: may throw or SIGKILL here
        acked.push([row, ack.seq]);
        if (ack.duplicate) {
          this.#stats.duplicates++;
          this.#log.info(
            { eventId: row.eventId, seq: row.seq },
            "event was already in the stream (republish absorbed by de-dup)",
          );
        }
      }
    } finally {
      // Whatever happens to the window, what was acknowledged is marked (a throwing hook is a
      // simulated crash: it marks nothing more), and no rejection is left unobserved.
      for (const p of acks.slice(acked.length)) p.catch(() => {});
      if (acked.length > 0) {
        this.#markAll(new Date().toISOString(), acked);
        this.#stats.published += acked.length;
        platformInstruments().outboxPublished.add(acked.length);
      }
    }
    if (failure !== undefined && !refused) throw failure;
    return acked.length;
  }

  /** Publishes one row in a PRODUCER span; `after` is the event id that must be the stream's last message. */
  #send(js: JetStreamClient, row: OutboxRow, after: string | undefined): Promise<PubAck> {
    // A PRODUCER span, child of the context the event was appended in; its own context goes in the
    // message headers, so the consumer's span is its child and the trace crosses NATS. Without a
    // stored traceparent the span starts a trace of its own (an event from a timer, say).
    const span = trace.getTracer("taskmesh.events").startSpan(
      `${row.subject} publish`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "send",
          "messaging.destination.name": row.subject,
          "messaging.message.id": row.eventId,
          "taskmesh.outbox.seq": row.seq,
        },
      },
      contextFromTraceparent(row.traceparent),
    );
    const h = headers();
    propagation.inject(trace.setSpan(context.active(), span), h, headerMapSetter);
    // A stored traceparent goes through unchanged when there is no tracer to continue it.
    if (row.traceparent && !h.has("traceparent")) h.set("traceparent", row.traceparent);
    return js
      .publish(row.subject, row.data, {
        msgID: row.eventId,
        headers: h,
        ...(after ? { expect: { lastMsgID: after } } : {}),
      })
      .then(
        (ack) => {
          if (ack.duplicate) span.setAttribute("taskmesh.duplicate", true);
          span.end();
          return ack;
        },
        (err: unknown) => {
          span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
          span.end();
          throw err;
        },
      );
  }

  /** Final passes during stop(), bounded by drainTimeoutMs (the publish in flight is finished, no new one starts). */
  async #drain(): Promise<void> {
    if (!this.#opts.link.connected || this.backlog() === 0) return;
    const abandon = AbortSignal.timeout(this.#opts.drainTimeoutMs);
    try {
      await this.#pass(abandon);
    } catch (err) {
      this.#log.warn({ err }, "outbox drain failed");
    }
    const left = this.backlog();
    if (left > 0)
      this.#log.warn({ backlog: left }, "relay stopped with unpublished events; they wait for the next start");
  }

  #noteFailure(err: unknown): void {
    // 503 "no responders": nobody listens on the subject, i.e. the stream is gone (deleted, or a
    // server that lost its store). Ensure the streams again before the next attempt.
    if (err instanceof NatsError && err.code === "503") this.#streamsReady = false;
  }

  #maybePrune(): void {
    const now = Date.now();
    if (now - this.#lastPrune < 60_000) return;
    this.#lastPrune = now;
    const cutoff = new Date(now - this.#opts.keepPublishedMs).toISOString();
    this.#prune.run(cutoff);
  }
}

/** JetStream's refusal of a publish whose `Nats-Expected-Last-Msg-Id` is not the stream's last message. */
function isWrongLastMsgId(err: unknown): boolean {
  return err instanceof NatsError && err.api_error?.err_code === 10070;
}
