import { closeSync, fdatasync, openSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import { context, propagation, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { type ConsumerMessages, headers, type JsMsg } from "nats";
import type { Db } from "../db/database.js";
import { tracedTransaction } from "../db/traced-transaction.js";
import type { Logger } from "../log/logger.js";
import { platformInstruments } from "../telemetry/metrics.js";
import { headerMapGetter } from "../telemetry/trace-context.js";
import { type BackoffOptions, backoffDelay, sleep } from "./backoff.js";
import { InboxPruner, type InboxRetention } from "./inbox.js";
import type { NatsLink } from "./nats-link.js";
import {
  type ConsumerSpec,
  DEADLETTER_HEADROOM,
  DEADLETTER_SUBJECT_PREFIX,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_MAX_DELIVER,
  ensureConsumer,
  ensureStreams,
  STREAMS,
  type StreamSpec,
} from "./streams.js";

/**
 * Thrown by a handler when the failure may go away on its own (a dependency is down, a timeout,
 * SQLITE_BUSY): the event is nak'ed and redelivered after an exponential backoff, up to
 * `maxDeliver` deliveries. Any other error sends the event to the dead-letter stream at once.
 */
export class TransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TransientError";
  }
}

/** Headers on a dead-lettered message (its data is the original message's data, unchanged). */
export const DEADLETTER_HEADERS = {
  reason: "Taskmesh-Dead-Letter-Reason",
  consumer: "Taskmesh-Consumer",
  subject: "Taskmesh-Original-Subject",
  stream: "Taskmesh-Original-Stream",
  streamSeq: "Taskmesh-Original-Seq",
  eventId: "Taskmesh-Event-Id",
  deliveries: "Taskmesh-Deliveries",
} as const;

export interface EventContext {
  /** The event id. Effects outside the database use it (or a key derived from it) as their idempotency key. */
  eventId: string;
  /** Durable name of the consumer handling it. */
  consumer: string;
  subject: string;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** W3C trace context from the message header, if the producer had one. */
  traceparent: string | undefined;
}

/**
 * How a consumer applies one event.
 *
 * - `external` (optional, async): effects outside this service's database (a gRPC call, an email).
 *   It runs before the transaction and again on every redelivery until the transaction commits,
 *   so it must be idempotent, keyed by `ctx.eventId`.
 * - `apply` (synchronous): the database effect, run inside the transaction that records the event
 *   id in the inbox, with `external`'s result. better-sqlite3 transactions cannot span an await,
 *   so `apply` must not be async (a returned promise rolls back and is treated as a bug).
 */
export interface EventHandler<R = void> {
  external?: (event: Envelope, ctx: EventContext) => Promise<R>;
  apply?: (event: Envelope, ctx: EventContext, external: R | undefined) => void;
}

export interface EventConsumerOptions<R = void> {
  link: NatsLink;
  db: Db;
  logger: Logger;
  /** The stream read; it is ensured (created or updated) together with DEADLETTER at start-up. */
  stream: StreamSpec;
  /** Durable name, filter, ack wait, max deliveries (defaults in ConsumerSpec). */
  consumer: Omit<ConsumerSpec, "stream">;
  /** An EventHandler, or a plain synchronous `apply` function. */
  handler: EventHandler<R> | ((event: Envelope, ctx: EventContext) => void);
  /** Delay before a transient failure is redelivered. @default { initialMs: 1000, maxMs: 60000 } */
  retryBackoff?: BackoffOptions;
  /** Messages pulled ahead of the ones being handled (their ack wait is running meanwhile). @default 64 */
  prefetch?: number;
  /**
   * Most messages applied in one transaction (one commit, one fsync). Messages that arrived while
   * the last batch was applied go together; alone, a message is applied at once, so a batch never
   * waits to fill. Handlers with an `external` effect are applied one at a time. @default 64
   */
  maxBatch?: number;
  /**
   * Commit without an fsync and acknowledge after one: a batch is committed with
   * synchronous=NORMAL (visible at once, its WAL frames in the page cache), then the WAL file is
   * fdatasync'ed on the libuv pool, off the event loop, and only then are the batch's messages
   * acked. Until that sync a power loss may take the effect and its inbox row back, but the
   * messages are not acked yet, so they are redelivered and applied again: exactly once holds,
   * and the read-model update is visible one fsync sooner. Only for a database that publishes
   * nothing (checked: no outbox table), since an event appended from a commit that can be lost
   * would go out and come back under a new id. Needs WAL mode; handlers with an `external`
   * effect commit with an fsync as before. @default false
   */
  syncBeforeAck?: boolean;
  /**
   * Fault injection for tests: `afterCommit` runs between the commit and the ack; throwing there
   * leaves the message unacknowledged, exactly like a process killed at that point.
   */
  hooks?: {
    afterCommit?: (event: Envelope, ctx: EventContext) => void;
    /** After the handler's external effect, before the inbox transaction (a crash here is redelivered). */
    beforeCommit?: (event: Envelope, ctx: EventContext) => void;
  };
  /** Pruning of this consumer's inbox rows past a horizon (default 7 days; InboxPruner says why it is safe). */
  retention?: InboxRetention;
}

/** The defaults of EventConsumerOptions, resolved once in the constructor. */
export const EVENT_CONSUMER_DEFAULTS: Readonly<
  Required<Pick<EventConsumerOptions, "retryBackoff" | "prefetch" | "maxBatch" | "syncBeforeAck">>
> = {
  retryBackoff: { initialMs: 1000, maxMs: 60_000 },
  // 64 pulled ahead (the consumer's max_ack_pending is 100): a burst that arrives during one
  // commit is in hand for the next, instead of waiting for a re-pull's round trip.
  prefetch: 64,
  maxBatch: 64,
  syncBeforeAck: false,
};

export interface ConsumerStats {
  /** Events applied (handler ran and committed). */
  applied: number;
  /** Deliveries acked without running the handler: the event id was already in the inbox. */
  duplicates: number;
  /** Transient failures nak'ed for redelivery. */
  retried: number;
  /** Events moved to the dead-letter stream. */
  deadLettered: number;
}

/**
 * A durable pull consumer with explicit ack, handling messages in stream order: decode the
 * Envelope → skip if the inbox has its id → run the handler and record the id in one transaction
 * → ack after the commit. Transient failures are nak'ed with backoff; anything else, and the last
 * allowed delivery, is published to `taskmesh.deadletter.<durable>` with the reason and then
 * terminated, so nothing is dropped silently.
 *
 * Messages that arrived while the previous ones were applied are applied together (up to
 * `maxBatch`): one transaction, one commit (one fsync under synchronous=FULL) for the batch, each
 * message in a savepoint of its own, so a failing event rolls back only its own effect and inbox
 * row and is nak'ed or dead-lettered alone, as it would be on its own. Acks follow the commit.
 */
export class EventConsumer<R = void> {
  readonly #opts: EventConsumerOptions<R> & typeof EVENT_CONSUMER_DEFAULTS;
  readonly #log: Logger;
  readonly #handler: EventHandler<R>;
  readonly #maxDeliver: number;
  readonly #seen;
  readonly #record;
  readonly #stats: ConsumerStats = { applied: 0, duplicates: 0, retried: 0, deadLettered: 0 };
  readonly #stopping = new AbortController();
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  /** Messages pending for this consumer at the last delivery (taskmesh_consumer_lag). */
  #lag: number | undefined;
  #unobserve: (() => void) | undefined;
  readonly #pruner: InboxPruner;
  /** The WAL file's descriptor, for syncBeforeAck (opened at the first sync). */
  #walFd: number | undefined;
  /** Syncs whose acks are still to be sent (stop() waits for them). */
  readonly #syncing = new Set<Promise<void>>();

  constructor(opts: EventConsumerOptions<R>) {
    this.#opts = { ...EVENT_CONSUMER_DEFAULTS, ...opts };
    this.#log = opts.logger.child({ component: "event-consumer", consumer: opts.consumer.durable });
    this.#handler = typeof opts.handler === "function" ? { apply: opts.handler } : opts.handler;
    this.#maxDeliver = opts.consumer.maxDeliver ?? DEFAULT_MAX_DELIVER;
    this.#seen = opts.db.prepare("SELECT 1 FROM inbox WHERE consumer = ? AND event_id = ?").pluck();
    this.#record = opts.db.prepare(
      "INSERT INTO inbox (consumer, event_id, subject, processed_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    // The longest an applied event can still be delivered again: every allowed delivery waiting
    // out its ack wait and the longest nak backoff.
    const deliveries = this.#maxDeliver + DEADLETTER_HEADROOM;
    const redeliveryHorizonMs =
      deliveries * ((opts.consumer.ackWaitMs ?? DEFAULT_ACK_WAIT_MS) + (opts.retryBackoff?.maxMs ?? 60_000));
    this.#pruner = new InboxPruner(opts.db, opts.consumer.durable, redeliveryHorizonMs, opts.retention);
    if (opts.syncBeforeAck) {
      if (opts.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").get())
        throw new Error(
          `syncBeforeAck (${opts.consumer.durable}): the database has an outbox; an event appended from a commit a power loss can take back would be published anyway`,
        );
      if (opts.db.pragma("journal_mode", { simple: true }) !== "wal")
        throw new Error(`syncBeforeAck (${opts.consumer.durable}) needs the database in WAL mode`);
    }
  }

  /** This consumer's inbox pruner (runs on its own once started; `prune()` for a pass now). */
  get pruner(): InboxPruner {
    return this.#pruner;
  }

  get stats(): Readonly<ConsumerStats> {
    return { ...this.#stats };
  }

  /** Starts consuming in the background (waiting for NATS if it is not there yet). */
  start(): void {
    if (this.#loop) return;
    const gauge = platformInstruments().consumerLag;
    const observe = (r: { observe(v: number, a: Record<string, string>): void }) => {
      if (this.#lag !== undefined) r.observe(this.#lag, { consumer: this.#opts.consumer.durable });
    };
    gauge.addCallback(observe);
    this.#unobserve = () => gauge.removeCallback(observe);
    this.#loop = this.#run();
    this.#pruner.start();
  }

  /** Stops pulling, lets the message being handled finish (and be acked), then resolves. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#messages?.close();
    await this.#loop;
    await Promise.all(this.#syncing);
    if (this.#walFd !== undefined) closeSync(this.#walFd);
    this.#walFd = undefined;
    await this.#pruner.stop();
    this.#unobserve?.();
  }

  async #run(): Promise<void> {
    const { link } = this.#opts;
    const spec: ConsumerSpec = { ...this.#opts.consumer, stream: this.#opts.stream.name };
    for (let attempt = 1; !this.#stopping.signal.aborted; attempt++) {
      try {
        await link.whenConnected(this.#stopping.signal);
        if (this.#stopping.signal.aborted) return;
        await ensureStreams(await link.jetstreamManager(), [this.#opts.stream, STREAMS.DEADLETTER]);
        await ensureConsumer(await link.jetstreamManager(), spec);
        const consumer = await (await link.jetstream()).consumers.get(spec.stream, spec.durable);
        if (this.#stopping.signal.aborted) return;
        this.#messages = await consumer.consume({ max_messages: this.#opts.prefetch });
        this.#log.info({ stream: spec.stream }, "consuming");
        attempt = 0;
        await this.#consume(this.#messages);
        if (!this.#stopping.signal.aborted) throw new Error("message iterator ended");
      } catch (err) {
        if (this.#stopping.signal.aborted) return;
        const delay = backoffDelay(attempt, { initialMs: 250, maxMs: 10_000 });
        this.#log.warn({ err, retryInMs: delay }, "consumer loop failed; restarting");
        await sleep(delay, this.#stopping.signal);
      }
    }
  }

  /**
   * Takes messages off the iterator into a queue and applies what the queue holds, batch by
   * batch, in order. nats.js keeps the iterator alive across disconnects (it re-pulls after a
   * reconnect). Returns when the iterator ends (stop()) or after the batch in hand once stopping.
   */
  async #consume(messages: ConsumerMessages): Promise<void> {
    const queue: JsMsg[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    let failure: unknown;
    const pump = (async () => {
      try {
        for await (const msg of messages) {
          queue.push(msg);
          wake?.();
        }
      } catch (err) {
        failure = err;
      } finally {
        ended = true;
        wake?.();
      }
    })();
    const one = this.#handler.external !== undefined;
    try {
      while (!this.#stopping.signal.aborted) {
        if (queue.length === 0) {
          if (ended) break;
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = undefined;
          // The rest of what one socket read brought reaches the queue in microtasks: let it, so
          // it is applied with this message rather than one commit after another.
          await new Promise<void>((r) => setImmediate(r));
          continue;
        }
        const batch = queue.splice(0, one ? 1 : this.#opts.maxBatch);
        if (one) await this.#handle(batch[0] as JsMsg);
        else await this.#applyBatch(batch);
      }
    } catch (err) {
      // The loop restarts with a new iterator: this one must stop pulling.
      await messages.close().catch(() => {});
      throw err;
    }
    // Messages left in the queue stay unacknowledged and are redelivered after their ack wait.
    if (this.#stopping.signal.aborted) return;
    await pump;
    if (failure !== undefined) throw failure;
  }

  /** The CONSUMER span of `msg`, child of the producer's context in its headers. */
  #span(msg: JsMsg): { span: Span; parent: ReturnType<typeof context.active> } {
    const parent = msg.headers ? propagation.extract(context.active(), msg.headers, headerMapGetter) : context.active();
    const span = trace.getTracer("taskmesh.events").startSpan(
      `${msg.subject} process`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": msg.subject,
          "messaging.consumer.group.name": this.#opts.consumer.durable,
          "messaging.message.delivery_count": msg.info.deliveryCount,
        },
      },
      parent,
    );
    return { span, parent };
  }

  /**
   * Applies a batch of messages (handlers without an external effect) in one transaction: each
   * message in its own span and savepoint, then, after the commit, acks in order; duplicates are
   * acked, failures nak'ed or dead-lettered one by one exactly as #handleInSpan would.
   */
  async #applyBatch(msgs: JsMsg[]): Promise<void> {
    const items: Pending[] = msgs.map((msg) => ({ msg, ...this.#span(msg) }));
    // Acks of this batch, sent after the commit (and, with syncBeforeAck, after the WAL sync).
    const acks: JsMsg[] = [];
    try {
      const todo: Pending[] = [];
      for (const it of items) {
        this.#lag = it.msg.info.pending;
        const deliveries = it.msg.info.deliveryCount;
        try {
          it.event = fromBinary(EnvelopeSchema, it.msg.data);
          if (!it.event.id) throw new Error("envelope has no id");
        } catch (err) {
          await this.#deadLetter(it.msg, `undecodable event: ${message(err)}`, undefined, it.span);
          continue;
        }
        const ctx: EventContext = {
          eventId: it.event.id,
          consumer: this.#opts.consumer.durable,
          subject: it.msg.subject,
          deliveryCount: deliveries,
          traceparent: it.msg.headers?.get("traceparent") || undefined,
        };
        it.ctx = ctx;
        it.span.setAttribute("messaging.message.id", ctx.eventId);
        if (this.#seen.get(ctx.consumer, ctx.eventId)) {
          this.#stats.duplicates++;
          this.#outcome(it.span, "duplicate");
          this.#log.debug({ eventId: ctx.eventId, deliveries }, "event already applied; acking without effect");
          acks.push(it.msg);
          continue;
        }
        if (deliveries > this.#maxDeliver) {
          await this.#deadLetter(it.msg, `not applied after ${this.#maxDeliver} deliveries`, ctx.eventId, it.span);
          continue;
        }
        try {
          this.#opts.hooks?.beforeCommit?.(it.event, ctx); // fault injection: may SIGKILL here
          todo.push(it);
        } catch (err) {
          it.outcome = "failed";
          it.error = err;
          await this.#settleFailure(it);
        }
      }
      if (todo.length === 0) return;
      const db = this.#opts.db;
      const sync = Number(db.pragma("synchronous", { simple: true }));
      const deferSync = this.#opts.syncBeforeAck === true && sync > 1;
      const applyOne = db.transaction((it: Pending) => {
        const ctx = it.ctx as EventContext;
        const fresh = this.#record.run(ctx.consumer, ctx.eventId, ctx.subject, new Date().toISOString()).changes === 1;
        if (!fresh) return false; // another instance (or an earlier copy in this batch) applied it
        const r: unknown = this.#handler.apply?.(it.event as Envelope, ctx, undefined);
        if (r instanceof Promise) throw new Error("EventHandler.apply returned a promise; it must be synchronous");
        return true;
      });
      const first = todo[0] as Pending;
      if (deferSync) db.pragma("synchronous = NORMAL");
      try {
        // The commit's span is a child of the first message's span (the only one, at low rates).
        context.with(trace.setSpan(first.parent, first.span), () =>
          tracedTransaction(
            db,
            {
              "messaging.consumer.group.name": this.#opts.consumer.durable,
              "messaging.batch.message_count": todo.length,
            },
            () =>
              db.transaction(() => {
                for (const it of todo) {
                  try {
                    // Nested: a savepoint, so a failure undoes this event alone.
                    const fresh = context.with(trace.setSpan(it.parent, it.span), () => applyOne(it));
                    it.outcome = fresh ? "applied" : "duplicate";
                  } catch (err) {
                    // An error that ended the whole transaction (I/O, disk full) fails the batch.
                    if (!db.inTransaction) throw err;
                    it.outcome = "failed";
                    it.error = err;
                  }
                }
              })(),
          ),
        );
      } catch (err) {
        // Nothing committed: every message of the batch is a failure (nak'ed or dead-lettered).
        for (const it of todo) {
          it.outcome = "failed";
          it.error = err;
        }
      } finally {
        if (deferSync) db.pragma(`synchronous = ${sync}`);
      }
      for (const it of todo) {
        if (it.outcome === "failed") {
          await this.#settleFailure(it);
          continue;
        }
        const applied = it.outcome === "applied";
        if (applied) this.#stats.applied++;
        else this.#stats.duplicates++;
        this.#outcome(it.span, applied ? "applied" : "duplicate");
        try {
          this.#opts.hooks?.afterCommit?.(it.event as Envelope, it.ctx as EventContext);
        } catch (err) {
          this.#log.warn(
            { err, eventId: it.ctx?.eventId },
            "afterCommit hook threw; leaving the message unacknowledged",
          );
          continue;
        }
        // After the commit: if this ack is lost, the redelivery finds the id in the inbox.
        acks.push(it.msg);
      }
    } finally {
      for (const it of items) it.span.end();
      this.#ack(acks);
    }
  }

  /** Acks `msgs` now, or with syncBeforeAck once the WAL (holding their commit) is on disk. */
  #ack(msgs: JsMsg[]): void {
    if (msgs.length === 0) return;
    const ackAll = () => {
      for (const m of msgs) m.ack();
    };
    if (!this.#opts.syncBeforeAck) {
      ackAll();
      return;
    }
    this.#walFd ??= openSync(`${this.#opts.db.name}-wal`, "r");
    const fd = this.#walFd;
    const done = new Promise<void>((resolve) =>
      fdatasync(fd, (err) => {
        // Not synced: no ack, so the messages come back after their ack wait and find, or redo, their effect.
        if (err) this.#log.error({ err }, "WAL sync failed; leaving the batch unacknowledged for redelivery");
        else ackAll();
        resolve();
      }),
    );
    this.#syncing.add(done);
    void done.then(() => this.#syncing.delete(done));
  }

  /** A message whose handler failed: nak'ed with backoff while transient and deliveries remain, else dead-lettered. */
  async #settleFailure(it: Pending): Promise<void> {
    const deliveries = it.msg.info.deliveryCount;
    const err = it.error;
    const log = this.#log.child({ eventId: it.ctx?.eventId, type: it.event?.type, deliveries });
    if (isTransient(err) && deliveries < this.#maxDeliver) {
      const delay = backoffDelay(deliveries, this.#opts.retryBackoff);
      this.#stats.retried++;
      this.#outcome(it.span, "retried");
      it.span.setStatus({ code: SpanStatusCode.ERROR, message: message(err) });
      log.warn({ err, retryInMs: delay }, "transient failure; event will be redelivered");
      it.msg.nak(delay);
      return;
    }
    const why = isTransient(err)
      ? `still failing after ${deliveries} deliveries: ${message(err)}`
      : `handler failed: ${message(err)}`;
    log.error({ err }, "event cannot be applied; dead-lettering it");
    await this.#deadLetter(it.msg, why, it.ctx?.eventId, it.span);
  }

  /**
   * Handles one message in a CONSUMER span that continues the producer's trace: its parent is the
   * context in the message headers (the relay's PRODUCER span), and the handler runs inside it, so
   * its logs, gRPC calls and appended events belong to the same trace.
   */
  async #handle(msg: JsMsg): Promise<void> {
    this.#lag = msg.info.pending;
    const { span, parent } = this.#span(msg);
    try {
      await context.with(trace.setSpan(parent, span), () => this.#handleInSpan(msg, span));
    } finally {
      span.end();
    }
  }

  #outcome(span: Span, outcome: "applied" | "duplicate" | "retried" | "dead_lettered"): void {
    span.setAttribute("taskmesh.outcome", outcome);
    platformInstruments().deliveries.add(1, { consumer: this.#opts.consumer.durable, outcome });
  }

  async #handleInSpan(msg: JsMsg, span: Span): Promise<void> {
    const deliveries = msg.info.deliveryCount;
    let event: Envelope;
    try {
      event = fromBinary(EnvelopeSchema, msg.data);
      if (!event.id) throw new Error("envelope has no id");
    } catch (err) {
      await this.#deadLetter(msg, `undecodable event: ${message(err)}`, undefined, span);
      return;
    }
    const ctx: EventContext = {
      eventId: event.id,
      consumer: this.#opts.consumer.durable,
      subject: msg.subject,
      deliveryCount: deliveries,
      traceparent: msg.headers?.get("traceparent") || undefined,
    };
    const log = this.#log.child({ eventId: event.id, type: event.type, deliveries });
    span.setAttribute("messaging.message.id", event.id);

    if (this.#seen.get(ctx.consumer, ctx.eventId)) {
      this.#stats.duplicates++;
      this.#outcome(span, "duplicate");
      log.debug("event already applied; acking without effect");
      msg.ack();
      return;
    }
    if (deliveries > this.#maxDeliver) {
      // Only reachable through the server's headroom: an earlier last attempt died mid-way.
      await this.#deadLetter(msg, `not applied after ${this.#maxDeliver} deliveries`, event.id, span);
      return;
    }

    let applied: boolean;
    try {
      const result = this.#handler.external ? await this.#handler.external(event, ctx) : undefined;
      this.#opts.hooks?.beforeCommit?.(event, ctx); // fault injection: may SIGKILL here
      applied = tracedTransaction(this.#opts.db, { "messaging.consumer.group.name": ctx.consumer }, () =>
        this.#opts.db.transaction(() => {
          const fresh =
            this.#record.run(ctx.consumer, ctx.eventId, ctx.subject, new Date().toISOString()).changes === 1;
          if (!fresh) return false; // another instance applied it meanwhile
          const r: unknown = this.#handler.apply?.(event, ctx, result);
          if (r instanceof Promise) throw new Error("EventHandler.apply returned a promise; it must be synchronous");
          return true;
        })(),
      );
    } catch (err) {
      if (isTransient(err) && deliveries < this.#maxDeliver) {
        const delay = backoffDelay(deliveries, this.#opts.retryBackoff);
        this.#stats.retried++;
        this.#outcome(span, "retried");
        span.setStatus({ code: SpanStatusCode.ERROR, message: message(err) });
        log.warn({ err, retryInMs: delay }, "transient failure; event will be redelivered");
        msg.nak(delay);
        return;
      }
      const why = isTransient(err)
        ? `still failing after ${deliveries} deliveries: ${message(err)}`
        : `handler failed: ${message(err)}`;
      log.error({ err }, "event cannot be applied; dead-lettering it");
      await this.#deadLetter(msg, why, event.id, span);
      return;
    }

    if (applied) this.#stats.applied++;
    else this.#stats.duplicates++;
    this.#outcome(span, applied ? "applied" : "duplicate");
    try {
      this.#opts.hooks?.afterCommit?.(event, ctx);
    } catch (err) {
      log.warn({ err }, "afterCommit hook threw; leaving the message unacknowledged");
      return;
    }
    // After the commit: if this ack is lost, the redelivery finds the id in the inbox.
    msg.ack();
  }

  /** Publishes the original data to the dead-letter subject, then terminates the message; if the publish fails, naks it instead. */
  async #deadLetter(msg: JsMsg, reason: string, eventId: string | undefined, span: Span): Promise<void> {
    const durable = this.#opts.consumer.durable;
    const h = headers();
    h.set(DEADLETTER_HEADERS.reason, headerValue(reason));
    h.set(DEADLETTER_HEADERS.consumer, durable);
    h.set(DEADLETTER_HEADERS.subject, msg.subject);
    h.set(DEADLETTER_HEADERS.stream, msg.info.stream);
    h.set(DEADLETTER_HEADERS.streamSeq, String(msg.info.streamSequence));
    h.set(DEADLETTER_HEADERS.deliveries, String(msg.info.deliveryCount));
    if (eventId) h.set(DEADLETTER_HEADERS.eventId, headerValue(eventId));
    const traceparent = msg.headers?.get("traceparent");
    if (traceparent) h.set("traceparent", traceparent);
    try {
      const js = await this.#opts.link.jetstream();
      await js.publish(`${DEADLETTER_SUBJECT_PREFIX}.${durable}`, msg.data, {
        headers: h,
        // The same poison message dead-lettered twice (a crash before term) is stored once.
        msgID: `${durable}:${msg.info.stream}:${msg.info.streamSequence}`,
      });
    } catch (err) {
      const delay = backoffDelay(msg.info.deliveryCount, this.#opts.retryBackoff);
      this.#log.error({ err, reason, retryInMs: delay }, "dead-letter publish failed; message will be redelivered");
      msg.nak(delay);
      return;
    }
    this.#stats.deadLettered++;
    this.#outcome(span, "dead_lettered");
    span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
    platformInstruments().deadLetters.add(1, { consumer: durable });
    this.#log.error({ eventId, reason, subject: msg.subject }, "event dead-lettered");
    msg.term();
  }
}

/** A message of a batch on its way through: decoded, in its span, and what became of it. */
interface Pending {
  msg: JsMsg;
  span: Span;
  parent: ReturnType<typeof context.active>;
  event?: Envelope;
  ctx?: EventContext;
  outcome?: "applied" | "duplicate" | "failed";
  error?: unknown;
}

function isTransient(err: unknown): boolean {
  if (err instanceof TransientError) return true;
  // Another connection held the write lock for longer than busy_timeout.
  const code = (err as { code?: unknown } | null)?.code;
  return code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** NATS header values are one line; keep them short. */
function headerValue(s: string): string {
  return s.replace(/[\r\n]+/g, " ").slice(0, 1000);
}
