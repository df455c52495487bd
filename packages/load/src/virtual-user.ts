import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { DashboardService } from "@taskmesh/gen/taskmesh/gateway/v1/dashboard_pb";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import type { Protocol } from "./args.js";
import { errorCode, type Stats } from "./stats.js";

/** The operations of the mix and their weights (out of 100). */
export const MIX = [
  ["ListTasks", 25],
  ["CreateTask", 20],
  ["CompleteTask", 10],
  ["SearchTasks", 15],
  ["GetDashboard", 15],
  ["GetTask", 15],
] as const;
export type MixMethod = (typeof MIX)[number][0];
export const MIX_METHODS: readonly MixMethod[] = MIX.map(([m]) => m);

/** Draws a method of the mix by weight. */
export function drawMethod(random = Math.random): MixMethod {
  let r = random() * 100;
  for (const [m, w] of MIX) {
    r -= w;
    if (r < 0) return m;
  }
  return "CreateTask";
}

/** How many ids of each kind a user remembers (a long run must not grow without bound). */
const KEEP = 200;

export function transportFor(protocol: Protocol, baseUrl: string): Transport {
  return protocol === "grpc"
    ? createGrpcTransport({ baseUrl })
    : createConnectTransport({ baseUrl, httpVersion: "1.1" });
}

/**
 * One user of the public API: an account of its own, the ids it has seen (tasks to get, open
 * recurring tasks to complete, words to search for) and its notification stream.
 */
export class VirtualUser {
  readonly email = `load-${randomUUID()}@example.com`;
  readonly #password = "load-correct-horse-battery";
  #token = "";
  #relogin: Promise<void> | undefined;
  readonly #taskIds: string[] = [];
  readonly #recurringOpen: string[] = [];
  readonly #words: string[] = [];
  readonly #users;
  readonly #tasks;
  readonly #analytics;
  readonly #dashboard;
  readonly #notifications;

  constructor(
    readonly index: number,
    transport: Transport,
    readonly timeoutMs: number,
  ) {
    this.#users = createClient(UserService, transport);
    this.#tasks = createClient(TaskService, transport);
    this.#analytics = createClient(AnalyticsService, transport);
    this.#dashboard = createClient(DashboardService, transport);
    this.#notifications = createClient(NotificationService, transport);
  }

  async register(signal: AbortSignal): Promise<void> {
    await this.#users.register({ email: this.email, password: this.#password }, { timeoutMs: this.timeoutMs, signal });
  }

  async login(signal: AbortSignal): Promise<void> {
    const res = await this.#users.login(
      { email: this.email, password: this.#password },
      { timeoutMs: this.timeoutMs, signal },
    );
    this.#token = res.accessToken;
  }

  #opts(signal: AbortSignal): CallOptions {
    return { headers: { authorization: `Bearer ${this.#token}` }, timeoutMs: this.timeoutMs, signal };
  }

  /**
   * Runs `method`, or the method it falls back to when this user has nothing for it yet (no open
   * recurring task to complete → create one; no task to get → list). Resolves the method run.
   */
  async call(method: MixMethod, signal: AbortSignal, onRun: (m: MixMethod) => void): Promise<void> {
    let run: MixMethod = method;
    if (run === "CompleteTask" && this.#recurringOpen.length === 0) run = "CreateTask";
    if (run === "GetTask" && this.#taskIds.length === 0) run = "ListTasks";
    onRun(run);
    try {
      await this.#run(run, signal);
    } catch (err) {
      // A token past its lifetime on a long run: log in again (once at a time); this call still counts as failed.
      if (ConnectError.from(err).code === Code.Unauthenticated && !signal.aborted) {
        this.#relogin ??= this.login(signal)
          .catch(() => undefined)
          .finally(() => {
            this.#relogin = undefined;
          });
      }
      throw err;
    }
  }

  async #run(method: MixMethod, signal: AbortSignal): Promise<void> {
    const opts = this.#opts(signal);
    switch (method) {
      case "ListTasks": {
        const res = await this.#tasks.listTasks({ status: TaskStatus.OPEN, pageSize: 20 }, opts);
        // Occurrences the recurrence service created after a completion show up here.
        for (const t of res.tasks) this.#learn(t);
        return;
      }
      case "CreateTask":
        return await this.#create(opts);
      case "CompleteTask": {
        const id = this.#recurringOpen.splice(Math.floor(Math.random() * this.#recurringOpen.length), 1)[0] as string;
        await this.#tasks.completeTask({ taskId: id }, opts);
        return;
      }
      case "SearchTasks": {
        const query = pick(this.#words) ?? "load";
        await this.#analytics.searchTasks({ query, limit: 10 }, opts);
        return;
      }
      case "GetDashboard":
        await this.#dashboard.getDashboard({}, opts);
        return;
      case "GetTask":
        await this.#tasks.getTask({ taskId: pick(this.#taskIds) as string }, opts);
        return;
    }
  }

  /**
   * A create as people make them: 40% recurring (RRULE, due tomorrow or later, two reminders),
   * 20% due within seconds with a reminder at the due time (so notification streams get
   * messages during a run), 40% plain. Every create carries an idempotency key.
   */
  async #create(opts: CallOptions): Promise<void> {
    const word = randomBytes(4).toString("hex");
    const kind = Math.random();
    const now = Date.now();
    const task =
      kind < 0.4
        ? {
            title: `load weekly review ${word}`,
            dueTime: timestampFromMs(now + (1 + Math.floor(Math.random() * 6)) * 86_400_000),
            timeZone: "Europe/Berlin",
            recurrenceRule: Math.random() < 0.5 ? "FREQ=DAILY" : "FREQ=WEEKLY;BYDAY=MO,WE,FR",
            reminderOffsets: [durationFromMs(900_000), durationFromMs(3_600_000)],
          }
        : kind < 0.6
          ? {
              title: `load call back ${word}`,
              dueTime: timestampFromMs(now + 2000 + Math.floor(Math.random() * 3000)),
              reminderOffsets: [durationFromMs(0)],
            }
          : { title: `load buy milk ${word}`, notes: "semi-skimmed" };
    const res = await this.#tasks.createTask({ task, idempotencyKey: randomUUID() }, opts);
    if (res.task) this.#learn(res.task);
    remember(this.#words, word);
  }

  #learn(t: Task): void {
    if (!this.#taskIds.includes(t.id)) remember(this.#taskIds, t.id);
    if (t.recurrenceRule && t.status === TaskStatus.OPEN && !this.#recurringOpen.includes(t.id)) {
      remember(this.#recurringOpen, t.id);
    }
  }

  /**
   * Keeps one WatchNotifications stream open until `signal` aborts, counting its messages; a stream
   * that ends or fails is opened again after an exponential backoff with full jitter (0.2 s..10 s).
   */
  async watch(stats: Stats, signal: AbortSignal): Promise<void> {
    let backoffMs = 200;
    while (!signal.aborted) {
      let received = false;
      // The gateway sends a stream's headers with its first message, so "open" is counted from the
      // request until the stream ends or fails; `answered` counts those whose headers came.
      stats.streams.opened++;
      stats.streams.open++;
      try {
        const stream = this.#notifications.watchNotifications(
          {},
          {
            headers: { authorization: `Bearer ${this.#token}` },
            signal,
            onHeader: () => {
              stats.streams.answered++;
            },
          },
        );
        for await (const _ of stream) {
          received = true;
          stats.streams.messages++;
        }
      } catch (err) {
        if (signal.aborted) break;
        stats.streamError(errorCode(err));
        if (ConnectError.from(err).code === Code.Unauthenticated) await this.login(signal).catch(() => undefined);
      } finally {
        stats.streams.open--;
      }
      if (signal.aborted) break;
      stats.streams.reconnects++;
      if (received) backoffMs = 200;
      await sleep(Math.random() * backoffMs, undefined, { signal }).catch(() => undefined);
      backoffMs = Math.min(backoffMs * 2, 10_000);
    }
  }
}

function pick<T>(xs: readonly T[]): T | undefined {
  return xs[Math.floor(Math.random() * xs.length)];
}

function remember<T>(xs: T[], x: T): void {
  xs.push(x);
  if (xs.length > KEEP) xs.shift();
}
