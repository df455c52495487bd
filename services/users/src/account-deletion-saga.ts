import { Code, ConnectError } from "@connectrpc/connect";
import type { NotificationInternalService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import type { TaskInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import type { CallOptions, GrpcClient, Logger } from "@taskmesh/platform";
import type { DeletionSagaLog, SagaRecord } from "./deletion-saga-log.js";
import type { UsersStore } from "./users-store.js";

/**
 * The steps of an account deletion, in order. The order is the design:
 *
 * 1. `disable_account` (local, reversible): the account can no longer log in and its tokens are
 *    refused by users. It is the only step that can fail for a business reason (the account is
 *    gone), and it comes first so nothing irreversible has happened when it does.
 * 2. `purge_tasks` (tasks TaskInternalService/PurgeUser) — THE POINT OF NO RETURN: deleted tasks
 *    cannot be restored. From here on a compensation can only re-enable an account that has lost
 *    data; the saga says so in its reason instead of pretending to undo it.
 * 3. `purge_notifications` (notifications NotificationInternalService/PurgeUser), irreversible too.
 * 4. `publish_user_deleted` (local): one transaction deletes the account and preferences, appends
 *    `user.deleted` to the outbox and ends the saga COMPLETED. Every service holding the user's
 *    data consumes the event and drops it (choreography), which also catches anything written
 *    between a purge and the deletion.
 *
 * Both purges are idempotent (a repeat deletes 0 rows), so a crash between a purge and its log
 * row is harmless: the resumed saga runs the purge again.
 */
export const DELETION_STEPS = [
  "disable_account",
  "purge_tasks",
  "purge_notifications",
  "publish_user_deleted",
] as const;
export type DeletionStep = (typeof DELETION_STEPS)[number];

/** A step failed for a reason that retrying will not change (the saga compensates). */
export class StepFailed extends Error {
  override name = "StepFailed";
}

/** gRPC codes worth retrying: the callee is away or slow. Anything else is a permanent failure. */
const RETRIABLE = new Set([Code.Unavailable, Code.DeadlineExceeded]);

export interface AccountDeletionOptions {
  log: DeletionSagaLog;
  store: UsersStore;
  tasks: Pick<GrpcClient<typeof TaskInternalService>, "purgeUser">;
  notifications: Pick<GrpcClient<typeof NotificationInternalService>, "purgeUser">;
  logger: Logger;
  /** Clock in ms. Default Date.now. */
  now?: () => number;
  /**
   * How long a remote step keeps retrying UNAVAILABLE / DEADLINE_EXCEEDED, measured from its first
   * attempt (across restarts; after a restart every pending step gets at least one more attempt).
   * Past it the saga compensates. Default 900000 ms (15 minutes).
   */
  retryBudgetMs?: number;
  /** Exponential backoff between attempts (equal jitter). Default { initialMs: 500, maxMs: 30000 }. */
  backoff?: { initialMs: number; maxMs: number };
  /** Deadline of one purge call. Default 10000 ms. */
  callTimeoutMs?: number;
  /**
   * Awaited after a step's success has been logged (before the next step starts): the fault seam
   * (FaultHooks.afterSagaStep, armed from TASKMESH_FAULT) and tests that stop the app here to
   * simulate a crash between two steps.
   */
  afterStep?: (saga: SagaRecord, step: DeletionStep) => void | Promise<void>;
}

/**
 * The account-deletion orchestrator: starts sagas, runs their steps in order against the durable
 * log (DeletionSagaLog), retries remote steps with backoff, compensates on a permanent failure,
 * and on start-up resumes every saga that is not finished.
 */
export class AccountDeletions {
  readonly #o: AccountDeletionOptions;
  readonly #now: () => number;
  readonly #stopping = new AbortController();
  readonly #running = new Map<string, Promise<void>>();

  constructor(opts: AccountDeletionOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Starts the deletion of `userId`'s account, or returns the one already running (one at a time
   * per user). The saga is committed before this returns; its steps run in the background.
   * `onCreated` runs inside the transaction that creates a new saga (not for one already running).
   */
  start(userId: string, onCreated?: (saga: SagaRecord) => void): SagaRecord {
    const { saga, created } = this.#o.log.startOrGet(userId, DELETION_STEPS[0], this.#now(), onCreated);
    if (created) this.#o.logger.info({ sagaId: saga.id, userId }, "account deletion started");
    this.#launch(saga.id);
    return saga;
  }

  get(id: string): SagaRecord | undefined {
    return this.#o.log.get(id);
  }

  /** Runs every unfinished saga of the log (call once at start-up). Returns how many. */
  resumeAll(): number {
    const sagas = this.#o.log.unfinished();
    for (const s of sagas) {
      this.#o.logger.info(
        { sagaId: s.id, userId: s.userId, step: s.step, state: s.state },
        "resuming account deletion",
      );
      this.#launch(s.id);
    }
    return sagas.length;
  }

  /**
   * Stops running sagas: a call in flight is cancelled, a backoff wait ends, and no further step
   * starts. What was logged stays; the next start resumes from there. Resolves once every saga
   * loop has returned (so the database can be closed).
   */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await Promise.all([...this.#running.values()]);
  }

  #launch(id: string): void {
    if (this.#stopping.signal.aborted || this.#running.has(id)) return;
    const run = this.#run(id)
      .catch((err: unknown) => {
        // Not a step failure (those are logged and compensated): the orchestrator itself failed
        // (a database error, a bug). The saga stays as logged and resumes at the next start.
        this.#o.logger.error(
          { err, sagaId: id },
          "account deletion paused by an unexpected error; resumes at next start",
        );
      })
      .finally(() => this.#running.delete(id));
    this.#running.set(id, run);
  }

  async #run(id: string): Promise<void> {
    const signal = this.#stopping.signal;
    let saga = this.#o.log.get(id);
    while (saga && !signal.aborted) {
      if (saga.state === "COMPLETED" || saga.state === "COMPENSATED") return;
      if (saga.state === "COMPENSATING") {
        this.#compensate(saga);
        return;
      }
      const step = saga.step as DeletionStep;
      const index = DELETION_STEPS.indexOf(step);
      if (index < 0) throw new Error(`saga ${id} is at unknown step "${saga.step}"`);
      const next = DELETION_STEPS[index + 1];
      const before = saga;
      saga =
        step === "purge_tasks" || step === "purge_notifications"
          ? await this.#remote(saga, step, next)
          : this.#local(saga, step, next);
      if (!saga) return; // stopped mid-call: nothing more is logged
      if (saga.state === "COMPLETED") this.#o.logger.info({ sagaId: id, userId: saga.userId }, "account deleted");
      const progressed = saga.state === "COMPLETED" || (saga.state === "RUNNING" && saga.step !== before.step);
      if (progressed) {
        // The step's success is committed (synchronous=FULL): a crash from here on resumes at the next step.
        await this.#o.afterStep?.(saga, step);
      }
    }
  }

  /** A local step: its effect and its log row in one transaction. */
  #local(saga: SagaRecord, step: DeletionStep, next: DeletionStep | undefined): SagaRecord {
    const now = this.#now();
    const { store } = this.#o;
    try {
      return this.#o.log.succeeded(saga, next, now, () => {
        if (step === "disable_account") {
          if (!store.setDisabled(saga.userId, new Date(now))) throw new StepFailed("the account does not exist");
        } else {
          store.deleteAccountWithEvent(saga.userId, new Date(now));
        }
      });
    } catch (err) {
      if (!(err instanceof StepFailed)) throw err;
      return this.#fail(saga, err.message);
    }
  }

  /** A remote purge: retried with backoff while the callee is away, within the retry budget. */
  async #remote(saga: SagaRecord, step: DeletionStep, next: DeletionStep | undefined): Promise<SagaRecord | undefined> {
    const signal = this.#stopping.signal;
    const budgetMs = this.#o.retryBudgetMs ?? 900_000;
    const backoff = this.#o.backoff ?? { initialMs: 500, maxMs: 30_000 };
    for (;;) {
      if (signal.aborted) return undefined;
      saga = this.#o.log.countAttempt(saga, this.#now());
      // A signal per call, linked to the stop signal and unlinked afterwards: the client leaves its
      // abort listener on the signal it is given, which must not pile up on the long-lived one.
      const callAbort = new AbortController();
      const cancel = () => callAbort.abort();
      signal.addEventListener("abort", cancel, { once: true });
      const call: CallOptions = { timeoutMs: this.#o.callTimeoutMs ?? 10_000, signal: callAbort.signal };
      try {
        const req = { userId: saga.userId };
        const res =
          step === "purge_tasks"
            ? await this.#o.tasks.purgeUser(req, call)
            : await this.#o.notifications.purgeUser(req, call);
        this.#o.logger.info(
          { sagaId: saga.id, userId: saga.userId, step, deleted: Number(res.deletedCount), attempts: saga.attempts },
          "account deletion step done",
        );
        return this.#o.log.succeeded(saga, next, this.#now());
      } catch (err) {
        if (signal.aborted) return undefined;
        const e = ConnectError.from(err);
        const error = `${Code[e.code]}: ${e.rawMessage}`;
        const elapsed = this.#now() - saga.stepStartedAt;
        if (!RETRIABLE.has(e.code)) return this.#fail(saga, error);
        // Checked after the attempt, so a step resumed after a long outage still gets one try.
        if (elapsed >= budgetMs) {
          return this.#fail(
            saga,
            `${error} (gave up after ${saga.attempts} attempts in ${Math.round(elapsed / 1000)} s, budget ${Math.round(budgetMs / 1000)} s)`,
          );
        }
        saga = this.#o.log.retrying(saga, error, this.#now());
        const delay = backoffDelay(saga.attempts, backoff);
        this.#o.logger.warn(
          { sagaId: saga.id, step, attempts: saga.attempts, error, retryInMs: delay },
          "account deletion step failed; retrying",
        );
        await sleep(delay, signal);
      } finally {
        signal.removeEventListener("abort", cancel);
      }
    }
  }

  #fail(saga: SagaRecord, error: string): SagaRecord {
    const reason = `${saga.step} failed: ${error}`;
    this.#o.logger.warn(
      { sagaId: saga.id, userId: saga.userId, step: saga.step, error },
      "account deletion failed; compensating",
    );
    const failed = this.#o.log.failed(saga, error, reason, this.#now());
    return this.#compensate(failed);
  }

  /**
   * Compensates the steps that succeeded, newest first: the account is enabled again; the purges
   * have no compensation (their data is gone) and are logged `irreversible`, and the reason says
   * what could not be restored. One transaction, so it is all or nothing.
   */
  #compensate(saga: SagaRecord): SagaRecord {
    const done = this.#o.log.succeededSteps(saga.id).reverse();
    const irreversible = done.filter((s) => s !== "disable_account");
    const reason =
      (saga.reason ?? `${saga.step} failed`) +
      (irreversible.length > 0
        ? `; the account is enabled again, but ${irreversible.join(", ")} already ran and cannot be undone (that data is gone)`
        : "; nothing was deleted and the account is enabled again");
    const result = this.#o.log.compensated(
      saga,
      done.map((step) => ({
        step,
        compensate:
          step === "disable_account" ? () => void this.#o.store.setDisabled(saga.userId, undefined) : undefined,
      })),
      reason,
      this.#now(),
    );
    this.#o.logger.warn({ sagaId: saga.id, userId: saga.userId, reason }, "account deletion compensated");
    return result;
  }
}

/** Delay before retry `attempt` (1-based): exponential, capped, equal jitter (half fixed, half random). */
function backoffDelay(attempt: number, b: { initialMs: number; maxMs: number }): number {
  const capped = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.round(capped / 2 + (capped / 2) * Math.random());
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
