// The account-deletion saga with a real crash: nats-server and every built service as real
// processes (startDrill), driven through the gateway. users is SIGKILLed by the fault drill
// `saga:exit-after-step:purge_tasks` (packages/platform/src/events/fault-drill.ts) right after that
// step is logged, restarted without it, and must finish the deletion from its log. Then every
// service's SQLite file is searched, generically, for anything of the deleted user.
import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { Kind, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { ReminderInternalService } from "@taskmesh/gen/taskmesh/reminders/v1/reminders_pb";
import type { Task } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { DeletionState, NotificationChannel, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createGrpcClient, ServiceTokens } from "@taskmesh/platform";
import { FAULT_ENV, tempDir } from "@taskmesh/platform/testing";
import { REPO_ROOT } from "@taskmesh/runner";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Drill, querySqlite, retryUnavailable, startDrill, waitFor, waitForExit } from "./drill.js";

let drill: Drill;
beforeAll(async () => {
  drill = await startDrill();
}, 60_000);
afterAll(async () => {
  await drill?.stop();
});

/** Every service that owns a SQLite file (`<dataDir>/<service>.db`); the gateway owns none. */
const SERVICES = ["users", "tasks", "reminders", "notifications", "analytics", "recurrence"] as const;

/**
 * The only `table.column`s allowed to keep the deleted user's id, and why. Everything else — every
 * other column of these tables too — is searched.
 */
const KEPT: ReadonlyMap<string, string> = new Map([
  // users: the saga's position and its step history. They outlive the account by design (ids only,
  // no email or hash): GetAccountDeletion answers from them, which is how the caller learns the
  // outcome (services/users/README.md, "The saga rows outlive the account").
  ["deletion_sagas.user_id", "saga log"],
  ["deletion_saga_log.user_id", "saga log"],
  // users, tasks, reminders, notifications: the Envelope (protobuf BLOB) of each event published,
  // which is the history the streams hold too — user.deleted itself carries the id.
  ["outbox.data", "published events"],
  // tasks, reminders, analytics: tombstones of deleted accounts (id + time). tasks refuses the
  // still-valid JWTs of a deleted user with it; reminders and analytics drop task events of that
  // user that arrive after user.deleted (TASKS and USERS are consumed independently).
  ["deleted_users.user_id", "tombstone"],
  // Not excluded, because nothing of the user is in them: `inbox` (consumer, event id, subject,
  // time), `meta`, `sqlite_sequence`, and the outbox's text columns (event id, subject, traceparent).
]);

interface Needles {
  userId: string;
  email: string;
  /** A word in every title and note the user wrote (catches copies keyed by something else, e.g. FTS rows). */
  tag: string;
}

/**
 * Rows mentioning `n` in any service's database, as "service.table.column" → row count: every
 * table (FTS5 tables and their shadow tables included), every TEXT value searched for the id, the
 * email and the tag, every BLOB value for the id (protobuf strings are stored as their UTF-8 bytes).
 * The files are opened read-only; the services keep running.
 */
function scan(n: Needles): Map<string, number> {
  const hits = new Map<string, number>();
  const id = Buffer.from(n.userId);
  for (const service of SERVICES) {
    const db = new Database(join(drill.dataDir, `${service}.db`), { readonly: true, fileMustExist: true });
    try {
      const tables = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .pluck()
        .all() as string[];
      for (const table of tables) {
        for (const row of db.prepare(`SELECT * FROM "${table.replaceAll('"', '""')}"`).all() as Record<
          string,
          unknown
        >[]) {
          for (const [column, v] of Object.entries(row)) {
            if (KEPT.has(`${table}.${column}`)) continue;
            const found =
              typeof v === "string"
                ? v.includes(n.userId) || v.toLowerCase().includes(n.email) || v.includes(n.tag)
                : Buffer.isBuffer(v) && v.includes(id);
            if (found) {
              const key = `${service}.${table}.${column}`;
              hits.set(key, (hits.get(key) ?? 0) + 1);
            }
          }
        }
      }
    } finally {
      db.close();
    }
  }
  return hits;
}

const servicesOf = (hits: Map<string, number>) => [...new Set([...hits.keys()].map((k) => k.split(".")[0]))].sort();
const tablesOf = (hits: Map<string, number>) =>
  [...new Set([...hits.keys()].map((k) => k.split(".", 2).join(".")))].sort();

/** A user of the gateway over gRPC (h2c), with the credentials the test needs later. */
async function person(gateway: string) {
  const transport = createGrpcTransport({ baseUrl: gateway });
  const users = createClient(UserService, transport);
  const tag = `saga${randomBytes(5).toString("hex")}`;
  const email = `${tag}@example.com`;
  const password = "correct-horse-battery";
  const registered = await retryUnavailable(() => users.register({ email, password }, { timeoutMs: 10_000 }));
  const login = await retryUnavailable(() => users.login({ email, password }, { timeoutMs: 10_000 }));
  const call = { headers: { authorization: `Bearer ${login.accessToken}` }, timeoutMs: 10_000 };
  const tasks = createClient(TaskService, transport);
  const notifications = createClient(NotificationService, transport);
  const analytics = createClient(AnalyticsService, transport);
  const userId = registered.user?.id ?? "";
  return {
    userId,
    email,
    password,
    tag,
    needles: { userId, email, tag } satisfies Needles,
    call,
    users,
    async createTask(title: string, t: { dueMs?: number; offsetsMs?: number[]; rrule?: string } = {}) {
      const res = await tasks.createTask(
        {
          task: {
            title: `${tag} ${title}`,
            notes: `notes of ${tag}`,
            ...(t.dueMs !== undefined ? { dueTime: timestampFromMs(t.dueMs), timeZone: "Europe/Paris" } : {}),
            recurrenceRule: t.rrule ?? "",
            reminderOffsets: (t.offsetsMs ?? []).map(durationFromMs),
          },
          idempotencyKey: randomUUID(),
        },
        call,
      );
      if (!res.task) throw new Error("CreateTask answered without a task");
      return res.task;
    },
    completeTask: (taskId: string) => tasks.completeTask({ taskId }, call),
    async listTasks(): Promise<Task[]> {
      const all: Task[] = [];
      let pageToken = "";
      do {
        const page = await tasks.listTasks({ pageSize: 100, pageToken }, call);
        all.push(...page.tasks);
        pageToken = page.nextPageToken;
      } while (pageToken);
      return all;
    },
    async notifications() {
      return (await notifications.listNotifications({ pageSize: 100 }, call)).notifications;
    },
    async stats() {
      const s = (await analytics.getStats({}, call)).stats;
      // as_of_time is "now": everything else must not move unless this user's data does.
      return {
        created: Number(s?.createdCount),
        completed: Number(s?.completedCount),
        open: Number(s?.openCount),
        overdue: Number(s?.overdueCount),
        rate: s?.completionRate,
        streak: s?.currentStreakDays,
      };
    },
  };
}
type Person = Awaited<ReturnType<typeof person>>;

const DAY_MS = 86_400_000;

/** Tasks of every kind a user's data can take, in every service that derives something from them. */
async function seed(p: Person, soonMs: number) {
  await p.users.updatePreferences(
    {
      preferences: {
        timeZone: "Europe/Paris",
        channels: [NotificationChannel.IN_APP],
      },
    },
    p.call,
  );
  // Due in a few seconds with a reminder before it: reminders fires reminder.due and task.due,
  // notifications stores both in the in-app inbox.
  const soon = await p.createTask("soon", { dueMs: soonMs, offsetsMs: [3_000] });
  // Far ahead: its timers stay pending in reminders.
  const later = await p.createTask("later", { dueMs: Date.now() + 30 * DAY_MS, offsetsMs: [900_000, 3_600_000] });
  // Recurring and completed: recurrence records the occurrence it has tasks create.
  const daily = await p.createTask("daily", {
    dueMs: Date.now() + 2 * DAY_MS,
    offsetsMs: [900_000],
    rrule: "FREQ=DAILY",
  });
  const someday = await p.createTask("someday");
  await p.completeTask(daily.id);
  return { soon, later, daily, someday };
}

/** Waits until every consumer has folded the seeded tasks of `p` (bounded). */
async function settled(
  p: Person,
  s: Awaited<ReturnType<typeof seed>>,
  schedule: (userId: string) => Promise<string[]>,
) {
  return await waitFor(
    `the events of ${p.tag} to be folded by recurrence, reminders, notifications and analytics`,
    async () => {
      const tasks = await p.listTasks();
      const child = tasks.find((t) => t.parentTaskId === s.daily.id);
      if (!child) return undefined;
      const kinds = (await p.notifications()).filter((n) => n.taskId === s.soon.id).map((n) => n.kind);
      if (!kinds.includes(Kind.REMINDER) || !kinds.includes(Kind.DUE)) return undefined;
      const st = await p.stats();
      if (st.created !== 5 || st.completed !== 1) return undefined;
      const timers = await schedule(p.userId);
      // later: 2 reminders + due; the child: 1 reminder + due; soon has fired, daily is completed.
      const want = [s.later.id, s.later.id, s.later.id, child.id, child.id].sort();
      if (JSON.stringify([...timers].sort()) !== JSON.stringify(want)) return undefined;
      return { child };
    },
    30_000,
  );
}

describe("TASKMESH_FAULT saga:exit-after-step", () => {
  it("stops users at start-up when the step is not one of the saga's", () => {
    const data = tempDir("taskmesh-saga-drill-");
    try {
      const run = spawnSync(process.execPath, [join(REPO_ROOT, "services/users/dist/main.js")], {
        env: {
          ...process.env,
          TASKMESH_DATA_DIR: data.path,
          GRPC_PORT: "0",
          JWKS_PORT: "0",
          TASKMESH_SERVICE_SECRET: randomBytes(32).toString("hex"),
          NATS_URL: "nats://127.0.0.1:1",
          [FAULT_ENV]: "saga:exit-after-step:purge_everything",
        },
        encoding: "utf8",
        timeout: 15_000,
      });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(
        "TASKMESH_FAULT: saga:exit-after-step:purge_everything: no such step (steps: disable_account, purge_tasks, purge_notifications, publish_user_deleted)",
      );
    } finally {
      data.remove();
    }
  });
});

describe("account deletion with the orchestrator SIGKILLed mid-saga", () => {
  it("finishes after the restart; no service keeps anything of the user, and another user keeps everything", async () => {
    const { gateway } = drill.system.endpoints;
    const remindersAddr = drill.system.endpoints.grpc.reminders;
    if (!remindersAddr) throw new Error("reminders is not running");
    const serviceTokens = new ServiceTokens(drill.system.serviceSecret, "faults-saga");
    const reminders = createGrpcClient(ReminderInternalService, {
      address: remindersAddr,
      defaultTimeoutMs: 5_000,
      retries: true,
      metadata: async () => ({ authorization: `Bearer ${await serviceTokens.token()}` }),
    });
    const timersOf = async (userId: string) =>
      (await reminders.listSchedule({ userId })).timers.map((t) => ({
        taskId: t.taskId,
        kind: t.kind,
        offset: Number(t.offsetSeconds),
        fire: t.fireTime ? timestampMs(t.fireTime) : 0,
      }));
    try {
      // --- Two users, each with data in every service. ---
      const a = await person(gateway);
      const b = await person(gateway);
      const soonMs = Date.now() + 5_000;
      const [seedA, seedB] = await Promise.all([seed(a, soonMs), seed(b, soonMs)]);
      const taskIdsOf = async (id: string) => (await timersOf(id)).map((t) => t.taskId);
      await Promise.all([settled(a, seedA, taskIdsOf), settled(b, seedB, taskIdsOf)]);

      // The search sees A's data in every service's file (so finding nothing later means something),
      // and none of it is stored under a kept column only.
      const before = scan(a.needles);
      expect(servicesOf(before)).toEqual([...SERVICES].sort());
      expect(tablesOf(before)).toEqual(
        expect.arrayContaining([
          "users.accounts",
          "users.preferences",
          "tasks.tasks",
          "tasks.idempotency_keys",
          "reminders.tasks",
          "reminders.timers",
          "notifications.notifications",
          "notifications.deliveries",
          "analytics.tasks",
          "analytics.users",
          "analytics.task_search",
          "recurrence.processed_occurrences",
        ]),
      );
      const bTablesBefore = tablesOf(scan(b.needles));
      const bBefore = {
        tasks: (await b.listTasks()).map((t) => `${t.id} ${t.status} ${t.title}`).sort(),
        stats: await b.stats(),
        timers: await timersOf(b.userId),
        notifications: (await b.notifications()).map((n) => n.id).sort(),
      };
      expect(bBefore.tasks).toHaveLength(5);
      expect(bBefore.timers).toHaveLength(5);
      expect(bBefore.notifications).toHaveLength(2);

      // --- users dies right after purge_tasks is logged. ---
      drill.exits.length = 0;
      await drill.system.restart("users", { env: { [FAULT_ENV]: "saga:exit-after-step:purge_tasks" } });
      // The answer races the SIGKILL (the steps run after it is sent); the saga is committed first either way.
      const answered = await retryUnavailable(() => a.users.deleteAccount({ password: a.password }, a.call)).catch(
        () => undefined,
      );
      expect(await waitForExit(drill, "users")).toBe("users: killed by SIGKILL");

      // Killed at exactly that point: purge_tasks done and logged, purge_notifications not started.
      const sagas = querySqlite<{ id: string; state: string; step: string }>(
        drill,
        "users",
        "SELECT id, state, step FROM deletion_sagas WHERE user_id = ?",
        a.userId,
      );
      expect(sagas).toEqual([{ id: expect.any(String), state: "RUNNING", step: "purge_notifications" }]);
      const sagaId = sagas[0]?.id as string;
      if (answered) expect(answered.deletion?.id).toBe(sagaId);
      const log = querySqlite<{ step: string; state: string }>(
        drill,
        "users",
        "SELECT step, state FROM deletion_saga_log WHERE saga_id = ? ORDER BY seq",
        sagaId,
      ).map((r) => `${r.step} ${r.state}`);
      expect(log.filter((l) => !l.endsWith(" started"))).toEqual([
        "disable_account succeeded",
        "purge_tasks succeeded",
      ]);
      expect(log.at(-1)).toBe("purge_notifications started");
      expect(querySqlite(drill, "tasks", "SELECT id FROM tasks WHERE user_id = ?", a.userId)).toEqual([]);
      expect(
        querySqlite<{ n: number }>(
          drill,
          "notifications",
          "SELECT count(*) AS n FROM notifications WHERE user_id = ?",
          a.userId,
        ),
      ).toEqual([{ n: 2 }]);
      expect(
        querySqlite(drill, "users", "SELECT disabled_at IS NOT NULL AS disabled FROM accounts WHERE id = ?", a.userId),
      ).toEqual([{ disabled: 1 }]);

      // --- Restarted without the drill, users resumes the saga from its log. ---
      await drill.system.restart("users", { env: { [FAULT_ENV]: undefined } });
      const done = await waitFor(
        "the resumed deletion to complete",
        async () => {
          const res = await retryUnavailable(() => a.users.getAccountDeletion({ deletionId: sagaId }, a.call));
          return res.deletion?.state === DeletionState.RUNNING ? undefined : res.deletion;
        },
        20_000,
      );
      expect({ state: DeletionState[done?.state ?? 0], reason: done?.reason }).toEqual({
        state: "COMPLETED",
        reason: "",
      });

      // --- Nothing of A left anywhere, once user.deleted has gone round. ---
      const left = await waitFor(
        "every service to drop the deleted user's rows",
        () => {
          const hits = scan(a.needles);
          return hits.size === 0 ? hits : undefined;
        },
        20_000,
      ).catch(() => scan(a.needles));
      expect(Object.fromEntries(left)).toEqual({});
      // The kept columns hold A's id for their stated reason: the tombstones exist, so user.deleted was applied.
      for (const service of ["tasks", "reminders", "analytics"]) {
        expect(
          querySqlite(drill, service, "SELECT user_id FROM deleted_users WHERE user_id = ?", a.userId),
        ).toHaveLength(1);
      }
      const login = await a.users
        .login({ email: a.email, password: a.password }, { timeoutMs: 10_000 })
        .catch((e) => e);
      expect(ConnectError.from(login).code).toBe(Code.Unauthenticated);

      // --- B keeps everything, in every table where it had data. ---
      expect(tablesOf(scan(b.needles))).toEqual(bTablesBefore);
      expect({
        tasks: (await b.listTasks()).map((t) => `${t.id} ${t.status} ${t.title}`).sort(),
        stats: await b.stats(),
        timers: await timersOf(b.userId),
        notifications: (await b.notifications()).map((n) => n.id).sort(),
      }).toEqual(bBefore);
      expect(drill.exits).toEqual(["users: killed by SIGKILL"]);
    } finally {
      reminders.close();
    }
  }, 90_000);
});
