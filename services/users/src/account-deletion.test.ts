import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { NotificationInternalService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { DeletionState, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  type GrpcClient,
  GrpcServer,
  NatsLink,
  register,
  requireService,
  ServiceTokens,
  STREAMS,
} from "@taskmesh/platform";
import { freePort, type NatsServer, startNats, tempDir, waitFor } from "@taskmesh/platform/testing";
import { build as buildTasks, loadTasksConfig, type TasksApp } from "@taskmesh/tasks/server";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeletionStep } from "./account-deletion-saga.js";
import { loadUsersConfig } from "./config.js";
import type { SagaRecord } from "./deletion-saga-log.js";
import { build, type UsersApp } from "./server.js";

const logger = createLogger("account-deletion-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "account-deletion-test-secret-32-chars-min";
const PASSWORD = "correct horse battery";
// Cheap scrypt: these tests are about the saga, not password cost.
const scrypt = { N: 1024, r: 8, p: 1 };

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(e)}`);
  return e;
}

type Behaviour = "ok" | "deny" | "unavailable" | { hold: Promise<void> };

/**
 * A fault-injecting double of notifications' NotificationInternalService/PurgeUser: a real grpc-js
 * server through the platform's GrpcServer, checking service tokens like any backend. Per user it
 * succeeds, refuses, is unavailable, or holds the call until released — failures the real
 * notifications service cannot be made to produce on demand, and which the saga's compensation
 * and retry paths need. The saga against the real notifications process (and a crash mid-saga)
 * is tests/faults/saga-crash.test.ts.
 */
async function notificationsStandIn() {
  const calls: string[] = [];
  const behaviour = new Map<string, Behaviour>();
  const server = new GrpcServer({
    name: "notifications-stand-in",
    logger,
    services: [
      register(
        NotificationInternalService,
        {
          async purgeUser(req, ctx) {
            requireService(ctx);
            calls.push(req.userId);
            const b = behaviour.get(req.userId) ?? "ok";
            if (b === "deny") throw new ConnectError("purges are switched off here", Code.PermissionDenied);
            if (b === "unavailable") throw new ConnectError("notifications is starting", Code.Unavailable);
            if (typeof b === "object") await b.hold;
            return { deletedCount: 2n };
          },
        },
        { kind: "internal" },
      ),
    ],
    serviceTokens: new ServiceTokens(SECRET, "notifications"),
    readiness: () => true,
  });
  const port = await server.listen(0, "127.0.0.1");
  return { port, calls, behaviour, stop: () => server.shutdown() };
}

describe("account deletion saga (real users, real tasks, real nats-server)", () => {
  const usersDir = tempDir("users-deletion-");
  const tasksDir = tempDir("tasks-deletion-");
  let nats: NatsServer;
  let admin: NatsLink;
  let notifications: Awaited<ReturnType<typeof notificationsStandIn>>;
  let tasks: TasksApp;
  let tasksAddress: string;
  let ports: { grpc: number; jwks: number; tasks: number };
  /** The users app currently running (a test replaces it to simulate a crash and a restart). */
  let users: UsersApp;
  let client: GrpcClient<typeof UserService>;
  const clients: { close(): void }[] = [];
  /** Set by a test: called after each saga step's success is logged. */
  let afterStep: ((saga: SagaRecord, step: DeletionStep) => void) | undefined;

  async function startUsers() {
    const config = loadUsersConfig({
      GRPC_PORT: String(ports.grpc),
      JWKS_PORT: String(ports.jwks),
      TASKMESH_DATA_DIR: usersDir.path,
      TASKMESH_SERVICE_SECRET: SECRET,
      NATS_URL: nats.url,
      TASKS_ADDR: tasksAddress,
      NOTIFICATIONS_ADDR: `127.0.0.1:${notifications.port}`,
      DELETION_CALL_TIMEOUT_MS: "2000",
      LOG_LEVEL: "silent",
    });
    users = build(config, {
      logger,
      scrypt,
      deletion: {
        backoff: { initialMs: 20, maxMs: 200 },
        retryBudgetMs: 1500,
        afterStep: (saga, step) => afterStep?.(saga, step),
      },
    });
    await users.listen();
  }

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger });
    notifications = await notificationsStandIn();
    ports = { grpc: await freePort(), jwks: await freePort(), tasks: await freePort() };
    tasksAddress = `127.0.0.1:${ports.tasks}`;
    await startUsers();
    client = createGrpcClient(UserService, { address: `127.0.0.1:${ports.grpc}` });
    tasks = buildTasks(
      loadTasksConfig({
        GRPC_PORT: String(ports.tasks),
        TASKMESH_DATA_DIR: tasksDir.path,
        TASKMESH_SERVICE_SECRET: SECRET,
        JWKS_URL: `http://127.0.0.1:${ports.jwks}/.well-known/jwks.json`,
        NATS_URL: nats.url,
        LOG_LEVEL: "silent",
      }),
      { logger },
    );
    await tasks.listen();
  });

  afterAll(async () => {
    client?.close();
    for (const c of clients) c.close();
    await users?.shutdown();
    await tasks?.shutdown();
    await notifications?.stop();
    await admin?.close();
    await nats?.stop();
    usersDir.remove();
    tasksDir.remove();
  });

  let n = 0;
  /** A registered, logged-in user with `taskCount` tasks in the real tasks service. */
  async function userWithTasks(taskCount: number) {
    const email = `deletion${++n}-${Date.now()}@example.com`;
    await client.register({ email, password: PASSWORD });
    const { accessToken, user } = await client.login({ email, password: PASSWORD });
    const auth = { headers: { authorization: `Bearer ${accessToken}` } };
    const taskClient = createGrpcClient(TaskService, { address: tasksAddress, metadata: () => auth.headers });
    clients.push(taskClient);
    for (let i = 0; i < taskCount; i++) await taskClient.createTask({ task: { title: `task ${i} of ${email}` } });
    return { email, id: user?.id as string, auth, taskClient };
  }

  function tasksOf(userId: string): number {
    const db = new Database(join(tasksDir.path, "tasks.db"), { readonly: true });
    try {
      return (db.prepare("SELECT count(*) AS n FROM tasks WHERE user_id = ?").get(userId) as { n: number }).n;
    } finally {
      db.close();
    }
  }

  function sagaRows(userId: string): number {
    const db = new Database(join(usersDir.path, "users.db"), { readonly: true });
    try {
      return (db.prepare("SELECT count(*) AS n FROM deletion_sagas WHERE user_id = ?").get(userId) as { n: number }).n;
    } finally {
      db.close();
    }
  }

  async function finished(id: string, auth: { headers: Record<string, string> }) {
    return waitFor(`deletion ${id} to finish`, async () => {
      const { deletion } = await client.getAccountDeletion({ deletionId: id }, auth);
      return deletion && deletion.state !== DeletionState.RUNNING ? deletion : undefined;
    });
  }

  /** Decoded messages of the USERS stream about `userId`. */
  async function userEvents(userId: string): Promise<{ envelope: Envelope; msgId: string | undefined }[]> {
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.USERS.name);
    const out: { envelope: Envelope; msgId: string | undefined }[] = [];
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.USERS.name, { seq });
      const envelope = fromBinary(EnvelopeSchema, m.data);
      if (envelope.userId === userId) out.push({ envelope, msgId: m.header?.get("Nats-Msg-Id") });
    }
    return out;
  }

  it("deletes an account: tasks purged, notifications purged, login refused, user.deleted published, COMPLETED", async () => {
    const victim = await userWithTasks(3);
    const bystander = await userWithTasks(2);
    expect(tasksOf(victim.id)).toBe(3);

    const { deletion } = await client.deleteAccount({ password: PASSWORD }, victim.auth);
    expect(deletion?.state).toBe(DeletionState.RUNNING);
    expect(deletion?.step).toBe("disable_account");

    const done = await finished(deletion?.id as string, victim.auth);
    expect(done).toMatchObject({ id: deletion?.id, state: DeletionState.COMPLETED, reason: "" });
    expect(tasksOf(victim.id)).toBe(0);
    expect(tasksOf(bystander.id)).toBe(2);
    expect(notifications.calls).toContain(victim.id);

    expect((await failure(client.login({ email: victim.email, password: PASSWORD }))).code).toBe(Code.Unauthenticated);
    expect((await failure(client.getMe({}, victim.auth))).code).toBe(Code.NotFound);
    expect((await client.getMe({}, bystander.auth)).user?.id).toBe(bystander.id);

    const events = await waitFor("user.deleted in the USERS stream", async () => {
      const e = await userEvents(victim.id);
      return e.some((m) => m.envelope.type === "user.deleted") ? e : undefined;
    });
    const deleted = events.filter((m) => m.envelope.type === "user.deleted");
    expect(deleted).toHaveLength(1);
    expect(deleted[0]?.msgId).toBe(deleted[0]?.envelope.id);
    expect(deleted[0]?.envelope.payload).toMatchObject({ case: "userDeleted", value: { userId: victim.id } });

    // The log: one row per transition, in step order.
    expect(logOf(deletion?.id as string)).toEqual([
      "disable_account:started",
      "disable_account:succeeded",
      "purge_tasks:started",
      "purge_tasks:succeeded",
      "purge_notifications:started",
      "purge_notifications:succeeded",
      "publish_user_deleted:started",
      "publish_user_deleted:succeeded",
      "saga:completed",
    ]);
  });

  function logOf(sagaId: string): string[] {
    const db = new Database(join(usersDir.path, "users.db"), { readonly: true });
    try {
      return (
        db.prepare("SELECT step, state FROM deletion_saga_log WHERE saga_id = ? ORDER BY seq").all(sagaId) as {
          step: string;
          state: string;
        }[]
      ).map((r) => `${r.step}:${r.state}`);
    } finally {
      db.close();
    }
  }

  it("resumes a saga stopped between purge_tasks and purge_notifications, and leaves no task of that user", async () => {
    const victim = await userWithTasks(2);
    let stopped: { done: Promise<void> } | undefined;
    afterStep = (saga, step) => {
      // The "crash": the app goes down right after purge_tasks was logged, before the next step.
      if (saga.userId === victim.id && step === "purge_tasks") stopped = { done: users.shutdown() };
    };
    const { deletion } = await client.deleteAccount({ password: PASSWORD }, victim.auth);
    const id = deletion?.id as string;
    await (await waitFor("the stop after purge_tasks", () => stopped)).done;
    afterStep = undefined;

    expect(logOf(id).slice(-2)).toEqual(["purge_tasks:succeeded", "purge_notifications:started"]);
    expect(notifications.calls).not.toContain(victim.id);
    expect(tasksOf(victim.id)).toBe(0);
    // While users is down the user's token is still accepted by tasks (tokens are stateless): a
    // task written now must not survive the deletion either.
    await victim.taskClient.createTask({ task: { title: "written between the crash and the restart" } });
    expect(tasksOf(victim.id)).toBe(1);

    // A new process on the same database resumes the saga from its log. (A fresh channel: the old
    // one would wait out grpc-js's reconnect backoff.)
    await startUsers();
    client.close();
    client = createGrpcClient(UserService, { address: `127.0.0.1:${ports.grpc}` });
    const done = await finished(id, victim.auth);
    expect(done.state).toBe(DeletionState.COMPLETED);
    expect(notifications.calls).toContain(victim.id);
    expect(logOf(id).filter((r) => r === "purge_tasks:succeeded")).toHaveLength(1);
    // tasks consumes user.deleted and drops what the purge step could not have seen.
    await waitFor("tasks to drop the late task on user.deleted", () => tasksOf(victim.id) === 0);
    expect((await failure(client.login({ email: victim.email, password: PASSWORD }))).code).toBe(Code.Unauthenticated);
  });

  it("compensates a permanently failing step: the account works again and the reason says what could not be undone", async () => {
    const victim = await userWithTasks(2);
    notifications.behaviour.set(victim.id, "deny");
    const { deletion } = await client.deleteAccount({ password: PASSWORD }, victim.auth);
    const done = await finished(deletion?.id as string, victim.auth);

    expect(done.state).toBe(DeletionState.COMPENSATED);
    expect(done.step).toBe("purge_notifications");
    expect(done.reason).toContain("purge_notifications failed: PermissionDenied: purges are switched off here");
    expect(done.reason).toContain("purge_tasks already ran and cannot be undone");
    expect(logOf(deletion?.id as string).slice(-4)).toEqual([
      "purge_notifications:failed",
      "purge_tasks:irreversible",
      "disable_account:compensated",
      "saga:compensated_saga",
    ]);
    // Usable again: login, GetMe, a new token at tasks.
    const { accessToken } = await client.login({ email: victim.email, password: PASSWORD });
    expect((await client.getMe({}, { headers: { authorization: `Bearer ${accessToken}` } })).user?.id).toBe(victim.id);
    // No user.deleted for an account that still exists (the audit events of its logins and the
    // deletion request are there too, and are not what this checks).
    const lifecycle = (await userEvents(victim.id))
      .map((m) => m.envelope.type)
      .filter((t) => t === "user.registered" || t === "user.deleted");
    expect(lifecycle).toEqual(["user.registered"]);
  });

  it("gives up on a step whose callee stays unavailable past the retry budget, then compensates", async () => {
    const victim = await userWithTasks(1);
    notifications.behaviour.set(victim.id, "unavailable");
    const { deletion } = await client.deleteAccount({ password: PASSWORD }, victim.auth);
    const done = await finished(deletion?.id as string, victim.auth);
    expect(done.state).toBe(DeletionState.COMPENSATED);
    expect(done.reason).toMatch(
      /purge_notifications failed: Unavailable: notifications is starting \(gave up after \d+ attempts/,
    );
    const log = logOf(deletion?.id as string);
    expect(log.filter((r) => r === "purge_notifications:retrying").length).toBeGreaterThan(1);
    expect((await client.getMe({}, victim.auth)).user?.id).toBe(victim.id);
  });

  it("returns the running deletion to a second DeleteAccount, and refuses the disabled account meanwhile", async () => {
    const victim = await userWithTasks(1);
    let release!: () => void;
    notifications.behaviour.set(victim.id, { hold: new Promise<void>((r) => (release = r)) });
    const first = (await client.deleteAccount({ password: PASSWORD }, victim.auth)).deletion;
    await waitFor("the saga to reach purge_notifications", () => notifications.calls.includes(victim.id));

    const second = (await client.deleteAccount({ password: PASSWORD }, victim.auth)).deletion;
    expect(second?.id).toBe(first?.id);
    expect(second?.state).toBe(DeletionState.RUNNING);
    expect(second?.step).toBe("purge_notifications");
    expect(sagaRows(victim.id)).toBe(1);

    // Disabled: no login, and its token is refused here.
    expect((await failure(client.getMe({}, victim.auth))).code).toBe(Code.Unauthenticated);
    const login = await failure(client.login({ email: victim.email, password: PASSWORD }));
    expect(login.code).toBe(Code.Unauthenticated);
    expect(login.rawMessage).toContain("deletion is in progress");

    release();
    expect((await finished(first?.id as string, victim.auth)).state).toBe(DeletionState.COMPLETED);
  });

  it("answers NOT_FOUND for another user's deletion and for an unknown id", async () => {
    const owner = await userWithTasks(0);
    const other = await userWithTasks(0);
    notifications.behaviour.set(owner.id, "deny"); // ends quickly, the account stays
    const { deletion } = await client.deleteAccount({ password: PASSWORD }, owner.auth);
    const id = deletion?.id as string;

    const e = await failure(client.getAccountDeletion({ deletionId: id }, other.auth));
    expect(e.code).toBe(Code.NotFound);
    const unknown = await failure(
      client.getAccountDeletion({ deletionId: "00000000-0000-4000-8000-000000000000" }, owner.auth),
    );
    expect(unknown.code).toBe(Code.NotFound);
    // The owner sees it.
    expect((await client.getAccountDeletion({ deletionId: id }, owner.auth)).deletion?.id).toBe(id);
    await finished(id, owner.auth);
  });

  it("refuses a wrong password with UNAUTHENTICATED and starts nothing", async () => {
    const victim = await userWithTasks(1);
    const e = await failure(client.deleteAccount({ password: "not the password" }, victim.auth));
    expect(e.code).toBe(Code.Unauthenticated);
    expect(sagaRows(victim.id)).toBe(0);
    expect((await client.getMe({}, victim.auth)).user?.id).toBe(victim.id);
    expect(tasksOf(victim.id)).toBe(1);
    expect(notifications.calls).not.toContain(victim.id);
  });
});
