import { AsyncResource } from "node:async_hooks";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ReminderDueSchema, TaskDueSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { appendEvent, type Db, type Logger, newEvent, platformInstruments } from "@taskmesh/platform";
import type { DueTimer, RemindersStore } from "./reminders-store.js";
import { OVERDUE_GRACE_MS } from "./timers.js";

export interface SchedulerOptions {
  db: Db;
  store: RemindersStore;
  logger: Logger;
  /** The clock, epoch ms. Tests pass their own and call `tick()` after moving it. */
  now: () => number;
  /** Longest sleep between two looks at the timers, in ms. Default 60000. */
  maxSleepMs?: number;
  /** Timers fired per transaction. Default 200. */
  batchSize?: number;
  /**
   * Fired timers whose due time is older than this are deleted (every minute while running, 500
   * rows per statement). Default 7 days; at least twice OVERDUE_GRACE_MS (checked), since a
   * timer's fire-once marker must outlive every chance of planning that timer again.
   */
  firedRetentionMs?: number;
}

/** How long fired timers are kept, by default: 7 days. */
export const DEFAULT_FIRED_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
const PRUNE_BATCH = 500;
const PRUNE_EVERY_MS = 60_000;

/**
 * Fires timers. `tick()` takes every pending timer with fire_time <= now and, in ONE transaction
 * per batch, sets each one's fire-once marker and appends its `reminder.due` / `task.due` to the
 * outbox, which the OutboxRelay publishes. Exactly one event per timer:
 * - a crash before the commit leaves the timers pending: the next start fires them again, and
 *   nothing had left the process;
 * - a crash after the commit leaves the events in the outbox: the relay publishes them on the
 *   next start, and the markers keep the timers from firing a second time.
 * Event ids are derived from the timer (task, kind, offset, due time), so even a second firing
 * of the same timer (a restored backup) is absorbed by JetStream's de-duplication and consumers' inboxes.
 *
 * While running (`start()`), it ticks at once (timers that came due while the service was down
 * fire now), then sleeps until the earliest pending fire time, at most `maxSleepMs` (a wall-clock
 * jump or a missed wake costs at most that long). `wake()` re-arms it after the timers changed,
 * e.g. a new timer earlier than the one it sleeps for.
 */
export class Scheduler {
  readonly #opts: SchedulerOptions;
  readonly #log: Logger;
  readonly #fireBatch: (now: number) => { fired: number; full: boolean };
  readonly #armDetached: () => void;
  #timer: NodeJS.Timeout | undefined;
  #wakeQueued = false;
  #running = false;
  #fired = 0;
  #pruneTimer: NodeJS.Timeout | undefined;
  readonly #retentionMs: number;

  constructor(opts: SchedulerOptions) {
    this.#opts = opts;
    this.#log = opts.logger.child({ component: "scheduler" });
    this.#retentionMs = opts.firedRetentionMs ?? DEFAULT_FIRED_RETENTION_MS;
    if (this.#retentionMs < 2 * OVERDUE_GRACE_MS)
      throw new Error(`firedRetentionMs must be at least ${2 * OVERDUE_GRACE_MS} ms (twice OVERDUE_GRACE_MS)`);
    // The timer loop runs in the async context the scheduler was built in (no span), not in the
    // context of whoever woke it: wake() is called from a consumer's span, and setImmediate and
    // setTimeout carry the caller's context along (AsyncLocalStorage), so every later tick — and
    // its log lines, and any event appended without a stored traceparent — would otherwise sit
    // in the trace of the last task event that happened to wake it.
    this.#armDetached = AsyncResource.bind(() => this.#arm());
    const { db, store } = opts;
    const batchSize = opts.batchSize ?? 200;
    this.#fireBatch = db.transaction((now: number) => {
      const due = store.dueTimers(now, batchSize);
      let fired = 0;
      for (const timer of due) {
        const event = timerEvent(timer, now);
        if (!store.markFired(timer.id, now, event.id)) continue;
        // In the trace of the task event that scheduled the timer (its consumer span, stored with
        // the timer), not in whatever is active here (nothing: a setTimeout or start-up). So a
        // reminder that fires hours later, or after a restart, shows in the trace of the request
        // that created or changed the task — one trace from the edge to the notification (issue 5);
        // the gap before the publish span is the wait. The relay's PRODUCER span is the child of
        // this context. A timer stored before migration 4 has none and starts a trace of its own.
        appendEvent(db, event, { traceparent: timer.traceparent ?? undefined });
        fired++;
      }
      // A full batch may have more behind it.
      return { fired, full: due.length === batchSize };
    });
  }

  /** Timers fired since construction. */
  get fired(): number {
    return this.#fired;
  }

  /**
   * Fires every timer due at the clock's now. Returns how many fired. Safe to call at any time
   * and from tests (synchronous; a timer fires once however often it is called).
   */
  tick(): number {
    const now = this.#opts.now();
    let total = 0;
    for (;;) {
      const { fired, full } = this.#fireBatch(now);
      total += fired;
      if (!full) break;
    }
    if (total > 0) {
      this.#fired += total;
      this.#log.info({ fired: total, now: new Date(now).toISOString() }, "timers fired");
    }
    return total;
  }

  /**
   * Deletes the fired timers past the retention horizon, PRUNE_BATCH rows per statement with a
   * turn of the event loop between; resolves how many.
   */
  async pruneFired(): Promise<number> {
    const dueBefore = this.#opts.now() - this.#retentionMs;
    let total = 0;
    for (;;) {
      const n = this.#opts.store.pruneFired(dueBefore, PRUNE_BATCH);
      total += n;
      if (n > 0) platformInstruments().retentionPruned.add(n, { table: "timers" });
      if (n < PRUNE_BATCH) return total;
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Ticks now (what came due while stopped fires at once) and keeps waking at the next fire time. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#armDetached();
    this.#pruneTimer = setInterval(() => {
      this.pruneFired().catch((err: unknown) => this.#log.warn({ err }, "pruning fired timers failed"));
    }, PRUNE_EVERY_MS).unref();
  }

  /** Stops waking. A tick in progress (synchronous) has finished by the time this returns. */
  stop(): void {
    clearInterval(this.#pruneTimer);
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Re-arms after the timers changed. Deferred to the next macrotask: it is called from inside
   * the transaction that changes them, and better-sqlite3 transactions are synchronous, so by
   * then the change has committed (or rolled back, which costs one query).
   */
  wake(): void {
    if (!this.#running || this.#wakeQueued) return;
    this.#wakeQueued = true;
    setImmediate(() => {
      this.#wakeQueued = false;
      if (this.#running) this.#armDetached();
    });
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      this.tick();
    } catch (err) {
      // SQLITE_BUSY or a full disk: the timers stay pending and the next wake tries again.
      this.#log.error({ err }, "firing timers failed; retrying at the next wake");
    }
    if (!this.#running) return;
    const maxSleep = this.#opts.maxSleepMs ?? 60_000;
    let delay = maxSleep;
    try {
      const next = this.#opts.store.nextFireTime();
      if (next !== undefined) delay = Math.min(maxSleep, Math.max(0, next - this.#opts.now()));
    } catch (err) {
      this.#log.error({ err }, "reading the next fire time failed");
    }
    // A timer due "now" after a tick means the clock has not reached it yet by a hair (or a
    // failure above): wait at least a little rather than spin.
    this.#timer = setTimeout(() => this.#arm(), Math.max(delay, 10));
    this.#timer.unref();
  }
}

/** The event a timer fires as: reminder.due for a reminder, task.due for the due timer. */
export function timerEvent(timer: DueTimer, now: number): ReturnType<typeof newEvent> {
  const common = {
    userId: timer.userId,
    aggregateId: timer.taskId,
    occurredAt: new Date(now),
    id: timerEventId(timer),
  };
  if (timer.kind === "reminder") {
    return newEvent({
      ...common,
      payload: {
        case: "reminderDue",
        value: create(ReminderDueSchema, {
          taskId: timer.taskId,
          title: timer.title,
          dueTime: timestampFromMs(timer.dueTime),
          offsetSeconds: BigInt(timer.offsetSeconds),
          fireTime: timestampFromMs(timer.fireTime),
          timeZone: timer.timeZone,
        }),
      },
    });
  }
  return newEvent({
    ...common,
    payload: {
      case: "taskDue",
      value: create(TaskDueSchema, {
        taskId: timer.taskId,
        title: timer.title,
        dueTime: timestampFromMs(timer.dueTime),
        timeZone: timer.timeZone,
      }),
    },
  });
}

/**
 * A UUID (RFC 9562 version 8, name-based on SHA-256) from the timer's identity: the same timer
 * always fires under the same event id.
 */
export function timerEventId(t: Pick<DueTimer, "taskId" | "kind" | "offsetSeconds" | "dueTime">): string {
  const h = createHash("sha256").update(`reminders\0${t.taskId}\0${t.kind}\0${t.offsetSeconds}\0${t.dueTime}`).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
