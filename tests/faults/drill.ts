// Helpers of the fault suite: the system as `npm start` runs it (real processes, real nats-server,
// SQLite files in a temporary data dir), a gRPC client of the gateway, and bounded waits.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Task } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { tempDir } from "@taskmesh/platform/testing";
import { type RunningSystem, startSystem } from "@taskmesh/runner";
import Database from "better-sqlite3";
import type { CheckedUser, CheckOptions } from "./checker.js";

export interface Drill {
  system: RunningSystem;
  dataDir: string;
  /** Processes that exited without being asked to (a fault drill's SIGKILL), as "name: status". */
  exits: string[];
  stop(): Promise<void>;
}

/** Starts nats-server and every built service on free ports in a fresh data dir. */
export async function startDrill(): Promise<Drill> {
  const data = tempDir("taskmesh-faults-");
  const exits: string[] = [];
  try {
    const system = await startSystem({
      dataDir: data.path,
      freePorts: true,
      logLevel: "warn",
      // The checker reads back every task through the gateway: the limiter (tested on its own)
      // would otherwise throttle it.
      env: { RATE_LIMIT_RPS: "0", LOGIN_RATE_LIMIT_PER_MINUTE: "0" },
      onUnexpectedExit: (name, status) => exits.push(`${name}: ${status}`),
    });
    return {
      system,
      dataDir: data.path,
      exits,
      async stop() {
        await system.stop();
        data.remove();
      },
    };
  } catch (err) {
    data.remove();
    throw err;
  }
}

/** Polls `probe` every 200 ms until it returns a value other than undefined; fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A user of the gateway, over gRPC (h2c). */
export interface Client extends CheckedUser {
  createTask(title: string, opts?: { recurring?: boolean }): Promise<Task>;
  completeTask(taskId: string): Promise<Task>;
  updateNotes(taskId: string, notes: string): Promise<Task>;
  deleteTask(taskId: string): Promise<void>;
  listTasks(): Promise<Task[]>;
}

/**
 * Calls `fn` again while the gateway answers UNAVAILABLE (a backend restarting, a channel still in
 * backoff after an outage), for at most `timeoutMs`, as a client with a retry policy would.
 */
export async function retryUnavailable<T>(fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Unavailable || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Registers a fresh user through the gateway and returns a client acting as them. */
export async function signUp(gateway: string): Promise<Client> {
  const transport = createGrpcTransport({ baseUrl: gateway });
  const users = createClient(UserService, transport);
  const tasks = createClient(TaskService, transport);
  const email = `faults-${randomUUID()}@example.com`;
  const password = "correct-horse-battery";
  const registered = await retryUnavailable(() => users.register({ email, password }, { timeoutMs: 10_000 }));
  const login = await retryUnavailable(() => users.login({ email, password }, { timeoutMs: 10_000 }));
  const call = { headers: { authorization: `Bearer ${login.accessToken}` }, timeoutMs: 10_000 };
  const must = (t: Task | undefined) => {
    if (!t) throw new Error("answer without a task");
    return t;
  };
  return {
    userId: registered.user?.id ?? "",
    token: login.accessToken,
    async createTask(title, opts = {}) {
      const res = await tasks.createTask(
        {
          task: {
            title,
            // Far ahead: the timers stay pending, so the reminders schedule is stable while checked.
            dueTime: timestampFromMs(Date.parse("2030-01-07T08:00:00Z")),
            timeZone: "Europe/Paris",
            recurrenceRule: opts.recurring === false ? "" : "FREQ=DAILY",
            reminderOffsets: [durationFromMs(900_000)],
          },
          idempotencyKey: randomUUID(),
        },
        call,
      );
      return must(res.task);
    },
    async completeTask(taskId) {
      return must((await tasks.completeTask({ taskId }, call)).task);
    },
    async updateNotes(taskId, notes) {
      return must((await tasks.updateTask({ taskId, notes }, call)).task);
    },
    async deleteTask(taskId) {
      await tasks.deleteTask({ taskId }, call);
    },
    async listTasks() {
      const all: Task[] = [];
      let pageToken = "";
      do {
        const page = await tasks.listTasks({ pageSize: 100, pageToken }, call);
        all.push(...page.tasks);
        pageToken = page.nextPageToken;
      } while (pageToken);
      return all;
    },
  };
}

/** The checker's options for these users and tasks on the running system. */
export function checkOptions(drill: Drill, users: readonly CheckedUser[], taskIds: readonly string[]): CheckOptions {
  const reminders = drill.system.endpoints.grpc.reminders;
  if (!reminders) throw new Error("reminders is not running");
  return {
    natsUrl: drill.system.endpoints.nats,
    dataDir: drill.dataDir,
    gateway: drill.system.endpoints.gateway,
    remindersAddr: reminders,
    serviceSecret: drill.system.serviceSecret,
    users,
    taskIds,
  };
}

/** One query against a service's SQLite file, opened read-only (the service may be running or dead). */
export function querySqlite<T>(drill: Drill, service: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(join(drill.dataDir, `${service}.db`), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/** Waits until `name` has died on its own (the drill's SIGKILL) and returns how it ended. */
export async function waitForExit(drill: Drill, name: string, timeoutMs = 15_000): Promise<string> {
  return await waitFor(`${name} to exit`, () => drill.exits.find((e) => e.startsWith(`${name}:`)), timeoutMs);
}
