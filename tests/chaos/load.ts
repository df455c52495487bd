// The chaos suite's steady load: a few virtual users, each with an account of its own, calling the
// gateway over gRPC (h2c) in a loop with a think time: creates (recurring with due times, due
// times with reminders, plain; half with an idempotency key), lists, gets, updates, completions,
// deletes, stats, search, the dashboard, the inbox and GetMe. Every call is recorded (what it
// needs, when, how it ended) and every task a user created is modelled with the last state the
// service acknowledged, so the end of the run can check that no acknowledged write was lost.
//
// Retries follow the contract: only idempotent calls (reads, CompleteTask, DeleteTask, the
// dashboard) and creates that carry an idempotency key are retried, and only on UNAVAILABLE, with
// exponential backoff and full jitter for a bounded time. A call counts as failed only when its
// last attempt failed.
import { randomBytes, randomUUID } from "node:crypto";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { DashboardService, Part } from "@taskmesh/gen/taskmesh/gateway/v1/dashboard_pb";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";

/** One client call as the load saw it, after its retries. */
export interface CallRecord {
  op: string;
  vu: number;
  /** Services the call cannot succeed without (the gateway always). */
  needs: readonly string[];
  startMs: number;
  endMs: number;
  ok: boolean;
  /** The final code name when it failed. */
  code?: string;
  attempts: number;
  /** GetDashboard only: the services behind the parts it answered without. */
  missing?: string[];
}

/** The state of a task the client learned from the service's answers. */
export interface KnownState {
  title: string;
  notes: string;
  completed: boolean;
  version: number;
}

/** A task a virtual user created (acknowledged) and what happened to it since. */
export interface TaskModel {
  id: string;
  userId: string;
  vu: number;
  recurring: boolean;
  /** The last state an answer carried (create, update, complete, get). */
  known: KnownState;
  /** DeleteTask acknowledged (OK, or NOT_FOUND on a retry after an unanswered attempt). */
  deleted: boolean;
  /** Changes attempted since `known` whose outcome the client never learned. */
  unsure: { titles: string[]; notes: string[]; completed: boolean; deleted: boolean };
  /** Load phase (fault index) of the last call about it. */
  lastPhase: number;
}

/** A CreateTask that finally failed: the task may or may not exist. */
export interface UnansweredCreate {
  title: string;
  keyed: boolean;
  userId: string;
  vu: number;
  phase: number;
  code: string;
}

export interface LoadOptions {
  /** The gateway, e.g. http://127.0.0.1:8080. */
  gateway: string;
  /** Virtual users. Default 4. */
  concurrency?: number;
  /** Mean pause between two calls of one user, ms (jittered ×0.5–1.5). Default 100. */
  thinkMs?: number;
  /** Per attempt deadline, ms. Default 5000. */
  attemptTimeoutMs?: number;
  /** How long a retryable call keeps retrying UNAVAILABLE, ms. Default 15000. */
  retryBudgetMs?: number;
  /** Open tasks per user above which the load deletes and completes rather than creates. Default 40. */
  maxOpenTasks?: number;
}

/** Weights of the operations in the mix. */
const MIX: ReadonlyArray<[Op, number]> = [
  ["create", 30],
  ["update", 14],
  ["complete", 10],
  ["delete", 8],
  ["get", 8],
  ["list", 10],
  ["stats", 5],
  ["search", 5],
  ["dashboard", 6],
  ["notifications", 2],
  ["me", 2],
];
type Op =
  | "create"
  | "update"
  | "complete"
  | "delete"
  | "get"
  | "list"
  | "stats"
  | "search"
  | "dashboard"
  | "notifications"
  | "me";

const PART_SERVICE: Record<number, string> = {
  [Part.USER]: "users",
  [Part.TASKS]: "tasks",
  [Part.NOTIFICATIONS]: "notifications",
  [Part.STATS]: "analytics",
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const word = () => randomBytes(4).toString("hex");
const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(Math.random() * xs.length)];

/** A user of the gateway, over gRPC h2c, with the retry rule above. */
export class VirtualUser {
  readonly tasks = new Map<string, TaskModel>();
  readonly unanswered: UnansweredCreate[] = [];
  userId = "";
  #token = "";
  readonly #email = `chaos-${randomUUID()}@example.com`;
  readonly #password = "correct-horse-battery";
  readonly #transport;
  readonly #users;
  readonly #taskApi;
  readonly #analytics;
  readonly #dashboard;
  readonly #notifications;

  constructor(
    readonly index: number,
    readonly load: Load,
    gateway: string,
  ) {
    this.#transport = createGrpcTransport({ baseUrl: gateway });
    this.#users = createClient(UserService, this.#transport);
    this.#taskApi = createClient(TaskService, this.#transport);
    this.#analytics = createClient(AnalyticsService, this.#transport);
    this.#dashboard = createClient(DashboardService, this.#transport);
    this.#notifications = createClient(NotificationService, this.#transport);
  }

  get token(): string {
    return this.#token;
  }

  /** Registers and logs in (retrying UNAVAILABLE: nothing runs until it is done). */
  async signUp(): Promise<void> {
    const t = { timeoutMs: 10_000 };
    const reg = await this.#untilAvailable(() =>
      this.#users.register({ email: this.#email, password: this.#password }, t),
    );
    this.userId = reg.user?.id ?? "";
    await this.#login();
  }

  async #login(): Promise<void> {
    const res = await this.#untilAvailable(() =>
      this.#users.login({ email: this.#email, password: this.#password }, { timeoutMs: 10_000 }),
    );
    this.#token = res.accessToken;
  }

  async #untilAvailable<T>(fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Unavailable || Date.now() > deadline) throw err;
        await sleep(250);
      }
    }
  }

  /** Every task of this user the service holds now (every status), occurrences included. */
  async listAll(): Promise<Task[]> {
    const all: Task[] = [];
    let pageToken = "";
    do {
      const page = await this.#untilAvailable(() =>
        this.#taskApi.listTasks({ pageSize: 100, pageToken }, this.#call(10_000)),
      );
      all.push(...page.tasks);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return all;
  }

  #call(timeoutMs: number) {
    return { headers: { authorization: `Bearer ${this.#token}` }, timeoutMs };
  }

  /** Runs calls until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.step();
      await sleep(this.load.thinkMs * (0.5 + Math.random()));
    }
  }

  /** One call of the mix. */
  async step(): Promise<void> {
    const open = [...this.tasks.values()].filter((t) => !t.deleted && !t.unsure.deleted && !t.known.completed);
    const alive = [...this.tasks.values()].filter((t) => !t.deleted && !t.unsure.deleted);
    let op = this.#draw();
    if (op !== "create" && alive.length === 0) op = "create";
    if ((op === "update" || op === "complete") && open.length === 0) op = "create";
    if (op === "create" && open.length >= this.load.maxOpenTasks) op = Math.random() < 0.5 ? "delete" : "complete";
    const someOpen = () => pick(open) as TaskModel;
    const someAlive = () => pick(alive) as TaskModel;
    switch (op) {
      case "create":
        return await this.#create();
      case "update":
        return await this.#update(someOpen());
      case "complete":
        return await this.#complete(open.length > 0 ? someOpen() : someAlive());
      case "delete":
        return await this.#delete(someAlive());
      case "get":
        return await this.#get(someAlive());
      case "list":
        await this.#do("list", ["tasks"], true, (c) =>
          this.#taskApi.listTasks({ status: TaskStatus.OPEN, pageSize: 20 }, c),
        );
        return;
      case "stats":
        await this.#do("stats", ["analytics"], true, (c) => this.#analytics.getStats({}, c));
        return;
      case "search": {
        const t = someAlive();
        await this.#do("search", ["analytics"], true, (c) =>
          this.#analytics.searchTasks({ query: t.known.title, limit: 5 }, c),
        );
        return;
      }
      case "dashboard":
        await this.#do(
          "dashboard",
          [],
          true,
          (c) => this.#dashboard.getDashboard({}, c),
          (res) => res.missing.map((m) => PART_SERVICE[m.part] ?? Part[m.part]),
        );
        return;
      case "notifications":
        await this.#do("notifications", ["notifications"], true, (c) =>
          this.#notifications.listNotifications({ pageSize: 5 }, c),
        );
        return;
      case "me":
        await this.#do("me", ["users"], true, (c) => this.#users.getMe({}, c));
        return;
    }
  }

  #draw(): Op {
    const total = MIX.reduce((s, [, w]) => s + w, 0);
    let r = Math.random() * total;
    for (const [op, w] of MIX) {
      r -= w;
      if (r < 0) return op;
    }
    return "create";
  }

  async #create(): Promise<void> {
    const keyed = Math.random() < 0.5;
    const kind = Math.random();
    const recurring = kind < 0.3;
    const due = kind < 0.7;
    // A word of its own, so SearchTasks by title finds exactly this task (and the checker can).
    const title = `chaos v${this.index} ${word()}`;
    // Due days ahead, so timers stay pending while the run lasts and the checker's view is stable.
    const dueMs = Date.now() + (2 + Math.floor(Math.random() * 28)) * 86_400_000;
    const phase = this.load.phase;
    const idempotencyKey = keyed ? randomUUID() : "";
    const res = await this.#do(`create${keyed ? " (key)" : ""}`, ["tasks"], keyed, (c) =>
      this.#taskApi.createTask(
        {
          task: {
            title,
            notes: "",
            ...(due ? { dueTime: timestampFromMs(dueMs), timeZone: "America/New_York" } : {}),
            recurrenceRule: recurring ? pick(["FREQ=DAILY", "FREQ=WEEKLY"]) : "",
            // One or two reminders (15 min, 1 h before) on tasks with a due time.
            reminderOffsets: due ? [900_000, 3_600_000].slice(0, kind < 0.5 ? 2 : 1).map(durationFromMs) : [],
          },
          idempotencyKey,
        },
        c,
      ),
    );
    if (res.ok && res.value.task) {
      const t = res.value.task;
      this.tasks.set(t.id, {
        id: t.id,
        userId: this.userId,
        vu: this.index,
        recurring,
        known: known(t),
        deleted: false,
        unsure: { titles: [], notes: [], completed: false, deleted: false },
        lastPhase: this.load.phase,
      });
    } else if (!res.ok) {
      this.unanswered.push({ title, keyed, userId: this.userId, vu: this.index, phase, code: res.code });
    }
  }

  async #update(t: TaskModel): Promise<void> {
    const retitle = Math.random() < 0.2;
    const title = retitle ? `chaos v${this.index} ${word()}` : undefined;
    const notes = retitle ? undefined : `note ${word()}`;
    t.lastPhase = this.load.phase;
    // UpdateTask is not idempotent by contract: never retried.
    const res = await this.#do("update", ["tasks"], false, (c) =>
      this.#taskApi.updateTask({ taskId: t.id, ...(title ? { title } : {}), ...(notes ? { notes } : {}) }, c),
    );
    if (res.ok && res.value.task) this.#learn(t, res.value.task);
    else if (!res.ok) {
      if (title) t.unsure.titles.push(title);
      if (notes) t.unsure.notes.push(notes);
    }
  }

  async #complete(t: TaskModel): Promise<void> {
    t.lastPhase = this.load.phase;
    const res = await this.#do("complete", ["tasks"], true, (c) => this.#taskApi.completeTask({ taskId: t.id }, c));
    if (res.ok && res.value.task) this.#learn(t, res.value.task);
    else if (!res.ok) t.unsure.completed = true;
  }

  async #delete(t: TaskModel): Promise<void> {
    t.lastPhase = this.load.phase;
    // A retry after an attempt that got no answer may find the task already gone: that is done.
    const res = await this.#do(
      "delete",
      ["tasks"],
      true,
      (c) => this.#taskApi.deleteTask({ taskId: t.id }, c),
      undefined,
      (err, attempts) => err.code === Code.NotFound && attempts > 1,
    );
    if (res.ok) t.deleted = true;
    else t.unsure.deleted = true;
  }

  async #get(t: TaskModel): Promise<void> {
    t.lastPhase = this.load.phase;
    const res = await this.#do("get", ["tasks"], true, (c) => this.#taskApi.getTask({ taskId: t.id }, c));
    if (res.ok && res.value.task) this.#learn(t, res.value.task);
  }

  /** An answer carrying the task is the service's word on its state now. */
  #learn(t: TaskModel, task: Task): void {
    t.known = known(task);
    t.unsure = { titles: [], notes: [], completed: false, deleted: false };
  }

  /**
   * One logical call with the retry rule, recorded. `done` turns a failure into success (a
   * retried delete that finds the task gone).
   */
  async #do<T>(
    op: string,
    needs: string[],
    retryable: boolean,
    fn: (call: { headers: Record<string, string>; timeoutMs: number }) => Promise<T>,
    missingOf?: (res: T) => string[],
    done?: (err: ConnectError, attempts: number) => boolean,
  ): Promise<{ ok: true; value: T } | { ok: false; code: string }> {
    const startMs = Date.now();
    const deadline = startMs + this.load.retryBudgetMs;
    let attempts = 0;
    let relogged = false;
    let backoff = 100;
    for (;;) {
      attempts++;
      try {
        const value = await fn(this.#call(this.load.attemptTimeoutMs));
        const missing = missingOf?.(value);
        this.load.record({
          op,
          vu: this.index,
          needs: ["gateway", ...needs, ...(missing ? this.#dashboardNeeds(missing) : [])],
          startMs,
          endMs: Date.now(),
          ok: true,
          attempts,
          ...(missing && missing.length > 0 ? { missing } : {}),
        });
        return { ok: true, value };
      } catch (err) {
        const e = ConnectError.from(err);
        if (done?.(e, attempts)) {
          this.load.record({
            op,
            vu: this.index,
            needs: ["gateway", ...needs],
            startMs,
            endMs: Date.now(),
            ok: true,
            attempts,
          });
          return { ok: true, value: undefined as T };
        }
        // A token past its lifetime on a long run: log in again once, then repeat the call.
        if (e.code === Code.Unauthenticated && !relogged) {
          relogged = true;
          await this.#login().catch(() => undefined);
          continue;
        }
        if (retryable && e.code === Code.Unavailable && Date.now() + backoff < deadline) {
          await sleep(Math.random() * backoff);
          backoff = Math.min(backoff * 2, 1000);
          continue;
        }
        const code = codeName(e.code);
        this.load.record({
          op,
          vu: this.index,
          needs: ["gateway", ...needs],
          startMs,
          endMs: Date.now(),
          ok: false,
          code,
          attempts,
        });
        return { ok: false, code };
      }
    }
  }

  /** The services a dashboard answer shows working: those behind the parts it did not miss. */
  #dashboardNeeds(missing: readonly string[]): string[] {
    return Object.values(PART_SERVICE).filter((s) => !missing.includes(s));
  }
}

/** The gRPC name of a code: Code.DeadlineExceeded → "DEADLINE_EXCEEDED". */
function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function known(t: Task): KnownState {
  return {
    title: t.title,
    notes: t.notes,
    completed: t.status === TaskStatus.COMPLETED,
    version: Number(t.version),
  };
}

/** The virtual users, their records, and the current phase (set by the fault runner). */
export class Load {
  readonly records: CallRecord[] = [];
  readonly users: VirtualUser[];
  readonly thinkMs: number;
  readonly attemptTimeoutMs: number;
  readonly retryBudgetMs: number;
  readonly maxOpenTasks: number;
  /** Index of the phase calls are attributed to (0 = before any fault). */
  phase = 0;
  #abort = new AbortController();
  #running: Promise<unknown> | undefined;

  constructor(opts: LoadOptions) {
    this.thinkMs = opts.thinkMs ?? 100;
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? 5000;
    this.retryBudgetMs = opts.retryBudgetMs ?? 15_000;
    this.maxOpenTasks = opts.maxOpenTasks ?? 40;
    this.users = Array.from({ length: opts.concurrency ?? 4 }, (_, i) => new VirtualUser(i + 1, this, opts.gateway));
  }

  record(r: CallRecord): void {
    this.records.push(r);
  }

  async signUp(): Promise<void> {
    await Promise.all(this.users.map((u) => u.signUp()));
  }

  start(): void {
    this.#running = Promise.all(this.users.map((u) => u.run(this.#abort.signal)));
  }

  /** Stops issuing calls and waits for the calls in flight (and their retries) to end. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#running;
  }

  get tasks(): TaskModel[] {
    return this.users.flatMap((u) => [...u.tasks.values()]);
  }

  get unanswered(): UnansweredCreate[] {
    return this.users.flatMap((u) => u.unanswered);
  }
}
