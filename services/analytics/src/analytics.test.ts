import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AnalyticsService, type Stats } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import {
  type Envelope,
  EnvelopeSchema,
  LabelDeletedSchema,
  TaskCompletedSchema,
  TaskCreatedSchema,
  TaskDeletedSchema,
  TaskUpdatedSchema,
  UserDeletedSchema,
  UserRegisteredSchema,
} from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { Priority, type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import {
  createGrpcClient,
  createLogger,
  createUserTokenVerifier,
  ensureStreams,
  type GrpcClient,
  NatsLink,
  newEvent,
  STREAMS,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
} from "@taskmesh/platform";
import { type NatsServer, startNats, tempDir, waitFor } from "@taskmesh/platform/testing";
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAnalyticsConfig } from "./config.js";
import { type AnalyticsApp, build } from "./server.js";

const logger = createLogger("analytics-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "analytics-test-secret-of-at-least-32-chars";
const REBUILD = resolve(import.meta.dirname, "../dist/rebuild.js");
const HOUR = 3_600_000;

describe("analytics service (real nats-server, events published by the test)", () => {
  const dir = tempDir("analytics-test-");
  let nats: NatsServer;
  let admin: NatsLink;
  let analytics: AnalyticsApp;
  let address: string;
  let signToken: (userId: string) => Promise<string>;
  let verifier: ReturnType<typeof createUserTokenVerifier>;
  /** The services' clock; tests move it. */
  let now = Date.parse("2024-03-10T03:00:00Z");
  const clients: { close(): void }[] = [];
  /** Every user a test touched, for the rebuild comparison. */
  const users = new Map<string, string[]>();
  /** Event times only move forward, so "as_of_time = the last event's time" means "all folded". */
  let lastEventMs = Date.parse("2024-01-01T00:00:00Z");

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger, reconnectTimeWaitMs: 100 });
    await ensureStreams(await admin.jetstreamManager(), [STREAMS.TASKS, STREAMS.USERS]);

    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
    verifier = createUserTokenVerifier(createLocalJWKSet({ keys: [jwk] }));
    signToken = (userId) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
        .setSubject(userId)
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("10m")
        .sign(privateKey);

    const started = await startAnalytics(join(dir.path, "analytics.db"));
    analytics = started.app;
    address = started.address;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await analytics?.shutdown();
    await admin?.close();
    await nats?.stop();
    dir.remove();
  });

  async function startAnalytics(dbPath: string): Promise<{ app: AnalyticsApp; address: string }> {
    const config = loadAnalyticsConfig({
      GRPC_PORT: "0",
      DB_PATH: dbPath,
      NATS_URL: nats.url,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    });
    const app = build(config, { logger, userTokens: verifier, clock: () => now, consumerAckWaitMs: 2000 });
    const { grpcPort } = await app.listen();
    return { app, address: `127.0.0.1:${grpcPort}` };
  }

  async function clientFor(userId: string, at = address): Promise<GrpcClient<typeof AnalyticsService>> {
    const token = await signToken(userId);
    const c = createGrpcClient(AnalyticsService, {
      address: at,
      metadata: () => ({ authorization: `Bearer ${token}` }),
    });
    clients.push(c);
    return c;
  }

  /** A fresh user, remembered for the rebuild comparison. */
  function newUser(queries: string[] = []): string {
    const id = randomUUID();
    users.set(id, queries);
    return id;
  }

  function task(userId: string, fields: MessageInitShape<typeof TaskSchema> = {}): Task {
    return create(TaskSchema, {
      id: randomUUID(),
      userId,
      title: "a task",
      status: TaskStatus.OPEN,
      timeZone: "UTC",
      version: 1n,
      ...fields,
    });
  }

  function nextEventTime(): Date {
    lastEventMs += 1000;
    return new Date(lastEventMs);
  }

  const ev = {
    created: (t: Task) =>
      newEvent({
        userId: t.userId,
        aggregateId: t.id,
        occurredAt: nextEventTime(),
        payload: { case: "taskCreated", value: create(TaskCreatedSchema, { task: t }) },
      }),
    updated: (t: Task) =>
      newEvent({
        userId: t.userId,
        aggregateId: t.id,
        occurredAt: nextEventTime(),
        payload: { case: "taskUpdated", value: create(TaskUpdatedSchema, { task: t, changedFields: ["title"] }) },
      }),
    completed: (t: Task, completedMs: number) =>
      newEvent({
        userId: t.userId,
        aggregateId: t.id,
        occurredAt: nextEventTime(),
        payload: {
          case: "taskCompleted",
          value: create(TaskCompletedSchema, {
            task: { ...t, status: TaskStatus.COMPLETED, completeTime: timestampFromMs(completedMs) },
          }),
        },
      }),
    deleted: (t: Task, version: bigint) =>
      newEvent({
        userId: t.userId,
        aggregateId: t.id,
        occurredAt: nextEventTime(),
        payload: { case: "taskDeleted", value: create(TaskDeletedSchema, { taskId: t.id, version }) },
      }),
    registered: (userId: string, timeZone: string) =>
      newEvent({
        userId,
        aggregateId: userId,
        occurredAt: nextEventTime(),
        payload: { case: "userRegistered", value: create(UserRegisteredSchema, { userId, email: "x@y.z", timeZone }) },
      }),
    userDeleted: (userId: string) =>
      newEvent({
        userId,
        aggregateId: userId,
        occurredAt: nextEventTime(),
        payload: { case: "userDeleted", value: create(UserDeletedSchema, { userId }) },
      }),
  };

  /** Publishes like a relay does (Nats-Msg-Id = event id unless `msgId` forces another copy). */
  async function publish(events: Envelope[], msgId?: (e: Envelope) => string): Promise<void> {
    const js = await admin.jetstream();
    for (const e of events) {
      await js.publish(`taskmesh.${e.type}`, toBinary(EnvelopeSchema, e), { msgID: msgId?.(e) ?? e.id });
    }
  }

  /** Waits until every event published so far for `userId` is folded (as_of reaches `e`'s time), returns the stats. */
  async function statsAfter(userId: string, e: Envelope, at = address): Promise<Stats> {
    const client = await clientFor(userId, at);
    const want = e.occurredAt ? Number(e.occurredAt.seconds) : 0;
    return await waitFor(`stats of ${userId} to include ${e.type}`, async () => {
      const { stats } = await client.getStats({});
      return stats && Number(stats.asOfTime?.seconds ?? 0) >= want ? stats : undefined;
    });
  }

  const counts = (s: Stats) => ({
    created: Number(s.createdCount),
    completed: Number(s.completedCount),
    open: Number(s.openCount),
    overdue: Number(s.overdueCount),
    rate: s.completionRate,
    streak: s.currentStreakDays,
  });

  it("counts created, completed and open tasks after a sequence with deletes, redeliveries and out-of-order updates", async () => {
    const user = newUser(["report", "draft"]);
    const t1 = task(user, { title: "Write report" });
    const t2 = task(user, { title: "Draft plan" });
    const t3 = task(user, { title: "Throwaway" });
    const t4 = task(user, { title: "Late starter" });
    const completeT1 = ev.completed({ ...t1, version: 2n }, now - HOUR);
    await publish([ev.created(t1), ev.created(t2), ev.created(t3), completeT1]);
    // A stale update of t1 (version 1, still open) arriving after its completion changes nothing.
    await publish([ev.updated({ ...t1, title: "Write report (old)", version: 1n })]);
    // The completion again under another Nats-Msg-Id (a relay retry past the duplicate window).
    await publish([completeT1], (e) => `${e.id}-copy`);
    // t2 renamed; t3 deleted; t4's update arrives before its creation.
    await publish([ev.updated({ ...t2, title: "Draft the plan", version: 2n }), ev.deleted(t3, 2n)]);
    await publish([ev.updated({ ...t4, title: "Late starter v2", version: 2n }), ev.created(t4)]);
    const last = ev.created(task(user, { title: "Write summary" }));
    await publish([last]);

    const stats = await statsAfter(user, last);
    expect(counts(stats)).toEqual({ created: 4, completed: 1, open: 3, overdue: 0, rate: 0.25, streak: 1 });
    expect(analytics.consumerStats().TASKS?.duplicates).toBeGreaterThanOrEqual(1);

    const client = await clientFor(user);
    const titles = async (query: string) => (await client.searchTasks({ query })).hits.map((h) => h.title).sort();
    expect(await titles("write")).toEqual(["Write report", "Write summary"]);
    expect(await titles("old")).toEqual([]); // the stale title was never indexed
    expect(await titles("draft")).toEqual(["Draft the plan"]);
    expect(await titles("late")).toEqual(["Late starter v2"]); // version 2 won over the late created (v1)
    expect(await titles("throwaway")).toEqual([]); // deleted
  });

  it("counts a reopened task as open again, and completed once more when it is completed again", async () => {
    const user = newUser(["reopen"]);
    const t = task(user, { title: "Reopen me" });
    const other = task(user, { title: "Stays done" });
    const done = ev.completed({ ...t, version: 2n }, now - HOUR);
    await publish([ev.created(t), ev.created(other), ev.completed({ ...other, version: 2n }, now - HOUR), done]);
    expect(counts(await statsAfter(user, done))).toMatchObject({ created: 2, completed: 2, open: 0 });

    // What ReopenTask publishes: task.updated with the task open and complete_time cleared.
    const reopened = newEvent({
      userId: user,
      aggregateId: t.id,
      occurredAt: nextEventTime(),
      payload: {
        case: "taskUpdated",
        value: create(TaskUpdatedSchema, { task: { ...t, version: 3n }, changedFields: ["status", "complete_time"] }),
      },
    });
    await publish([reopened]);
    expect(counts(await statsAfter(user, reopened))).toMatchObject({ created: 2, completed: 1, open: 1, rate: 0.5 });
    // The completion from before the reopen, redelivered, is older and changes nothing.
    await publish([done], (e) => `${e.id}-again`);
    const again = ev.completed({ ...t, version: 4n }, now - HOUR / 2);
    await publish([again]);
    expect(counts(await statsAfter(user, again))).toMatchObject({ created: 2, completed: 2, open: 0 });
  });

  it("counts live tasks per priority, following priority changes, completions and deletes", async () => {
    const user = newUser();
    const a = task(user, { title: "P1 a", priority: Priority.P1 });
    const b = task(user, { title: "P1 b", priority: Priority.P1 });
    const c = task(user, { title: "P2 c", priority: Priority.P2 });
    const old = task(user, { title: "from before priorities" }); // UNSPECIFIED in the event: P4
    await publish([ev.created(a), ev.created(b), ev.created(c), ev.created(old)]);
    // b lowered to P3, a completed, c deleted.
    await publish([ev.updated({ ...b, priority: Priority.P3, version: 2n }), ev.completed({ ...a, version: 2n }, now)]);
    const last = ev.deleted(c, 2n);
    await publish([last]);
    const stats = await statsAfter(user, last);
    expect(stats.priorityCounts.map((p) => [p.priority, Number(p.openCount), Number(p.completedCount)])).toEqual([
      [Priority.P1, 0, 1],
      [Priority.P3, 1, 0],
      [Priority.P4, 1, 0],
    ]);
  });

  it("counts live tasks per project and label, drops a deleted label from every task, and searches within a project or label", async () => {
    const user = newUser(["seed"]);
    const [home, work, red, blue] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const a = task(user, { title: "seed beans", projectId: home, labelIds: [blue, red].sort() });
    const b = task(user, { title: "seed peas", projectId: home, labelIds: [red] });
    const c = task(user, { title: "seed report", projectId: work, labelIds: [blue], parentId: a.id });
    await publish([ev.created(a), ev.created(b), ev.created(c)]);
    // b moves to work and is completed; the red label is deleted (one event, no task event).
    await publish([ev.completed({ ...b, projectId: work, version: 2n }, now)]);
    const labelGone = newEvent({
      userId: user,
      aggregateId: red,
      occurredAt: nextEventTime(),
      payload: { case: "labelDeleted", value: create(LabelDeletedSchema, { labelId: red }) },
    });
    await publish([labelGone]);
    // A redelivered older event of a (still naming red) does not bring the label back.
    await publish([ev.created(a)], () => randomUUID());
    const last = ev.updated({ ...c, title: "seed report draft", version: 2n });
    await publish([last]);
    const stats = await statsAfter(user, last);
    const rows = (xs: { openCount: bigint; completedCount: bigint }[], id: (x: never) => string) =>
      xs.map((x) => [id(x as never), Number(x.openCount), Number(x.completedCount)]);
    expect(rows(stats.projectCounts, (p: { projectId: string }) => p.projectId)).toEqual(
      [
        [home, 1, 0],
        [work, 1, 1],
      ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
    );
    expect(rows(stats.labelCounts, (l: { labelId: string }) => l.labelId)).toEqual([[blue, 2, 0]]);
    const client = await clientFor(user);
    const ids = async (req: { projectId?: string; labelId?: string }) =>
      (await client.searchTasks({ query: "seed", ...req })).hits.map((h) => h.title).sort();
    expect(await ids({})).toEqual(["seed beans", "seed peas", "seed report draft"]);
    expect(await ids({ projectId: work })).toEqual(["seed peas", "seed report draft"]);
    expect(await ids({ labelId: blue })).toEqual(["seed beans", "seed report draft"]);
    expect(await ids({ projectId: home, labelId: blue })).toEqual(["seed beans"]);
    // A deleted label, and another user's project, are NOT_FOUND.
    const refused = (p: Promise<unknown>) =>
      p.then(
        () => "OK",
        (e: ConnectError) => Code[e.code],
      );
    expect(await refused(ids({ labelId: red }))).toBe("NotFound");
    const stranger = await clientFor(newUser());
    expect(await refused(stranger.searchTasks({ query: "seed", projectId: home }))).toBe("NotFound");
  });

  it("counts open tasks past their due time as overdue, by the injected clock", async () => {
    const user = newUser(["due"]);
    const soon = task(user, { title: "Due soon", dueTime: timestampFromMs(now + HOUR) });
    const past = task(user, { title: "Due yesterday", dueTime: timestampFromMs(now - 24 * HOUR) });
    const donePast = task(user, { title: "Due and done", dueTime: timestampFromMs(now - 2 * HOUR) });
    const noDue = task(user, { title: "Someday" });
    const last = ev.completed({ ...donePast, version: 2n }, now - 3 * HOUR);
    await publish([ev.created(soon), ev.created(past), ev.created(donePast), ev.created(noDue), last]);
    expect(counts(await statsAfter(user, last))).toMatchObject({ created: 4, completed: 1, open: 3, overdue: 1 });

    const saved = now;
    try {
      now += 2 * HOUR;
      const { stats } = await (await clientFor(user)).getStats({});
      expect(stats && counts(stats)).toMatchObject({ open: 3, overdue: 2 });
    } finally {
      now = saved;
    }
  });

  it("counts the streak in the user's registered time zone, up to yesterday while today has no completion", async () => {
    const user = newUser(["streak"]);
    const tokyo = user;
    // now = 12:00 on 10 March in Tokyo. Completed at Tokyo 10 Mar 00:30, 9 Mar 23:00 and 8 Mar 10:00
    // (UTC: 9, 9 and 8 March: a streak of only 2 there).
    const times = ["2024-03-09T15:30:00Z", "2024-03-09T14:00:00Z", "2024-03-08T01:00:00Z"].map(Date.parse);
    const events: Envelope[] = [];
    for (const [i, ms] of times.entries()) {
      const t = task(user, { title: `streak ${i}` });
      events.push(ev.created(t), ev.completed({ ...t, version: 2n }, ms));
    }
    await publish([ev.registered(tokyo, "Asia/Tokyo")]);
    await publish(events);
    const folded = await statsAfter(user, events[events.length - 1] as Envelope);
    expect(counts(folded)).toMatchObject({ created: 3, completed: 3 });
    // USERS and TASKS are consumed independently: the zone may land a moment after the tasks.
    // In UTC this would be 2, in New York 1; only Tokyo's calendar gives 3.
    await waitFor("a 3-day streak in Tokyo", async () => {
      const { stats } = await (await clientFor(user)).getStats({});
      return stats?.currentStreakDays === 3;
    });

    const saved = now;
    try {
      now = Date.parse("2024-03-11T14:59:00Z"); // 23:59 on 11 March in Tokyo: nothing today yet
      expect((await (await clientFor(user)).getStats({})).stats?.currentStreakDays).toBe(3);
      now = Date.parse("2024-03-11T15:00:00Z"); // 12 March began in Tokyo: 11 March had none
      expect((await (await clientFor(user)).getStats({})).stats?.currentStreakDays).toBe(0);
    } finally {
      now = saved;
    }
  });

  it("searches the caller's titles and notes by word prefixes, all required, with marked snippets", async () => {
    const user = newUser(["gro", "buy gro", "lis", "buy lis", '"foo AND (', "milk"]);
    const other = newUser(["gro"]);
    const groceries = task(user, { title: "Buy groceries", notes: "milk, eggs and bread" });
    const flights = task(user, { title: "Book flights", notes: "to Lisbon in May" });
    const theirs = task(other, { title: "Buy groceries", notes: "for the other user" });
    const last = ev.created(flights);
    await publish([ev.created(groceries), ev.created(theirs), last]);
    await statsAfter(user, last);
    const client = await clientFor(user);

    const byTitle = await client.searchTasks({ query: "gro" });
    expect(byTitle.hits.map((h) => [h.taskId, h.title, h.completed])).toEqual([[groceries.id, "Buy groceries", false]]);
    expect(byTitle.hits[0]?.snippet).toBe("Buy [groceries]");
    const byNote = await client.searchTasks({ query: "LIS" });
    expect(byNote.hits.map((h) => h.taskId)).toEqual([flights.id]);
    expect(byNote.hits[0]?.snippet).toBe("to [Lisbon] in May");
    expect((await client.searchTasks({ query: "buy lis" })).hits).toEqual([]); // every word must match
    expect((await client.searchTasks({ query: "book lis" })).hits.map((h) => h.taskId)).toEqual([flights.id]);
    // FTS5 syntax in the input is searched for as words (or dropped), never an error.
    await expect(client.searchTasks({ query: '"foo AND (' })).resolves.toEqual(expect.objectContaining({ hits: [] }));
    await expect(client.searchTasks({ query: '"(*' })).resolves.toEqual(expect.objectContaining({ hits: [] }));
    // `OR` is a word too (as an operator it would let `milk` alone match).
    expect((await client.searchTasks({ query: "milk OR" })).hits).toEqual([]);
    expect((await client.searchTasks({ query: "milk AND" })).hits[0]?.snippet).toBe("[milk], eggs [and] bread");
    // Updates re-index, deletes remove.
    const renamed = ev.updated({ ...groceries, title: "Buy vegetables", version: 2n });
    const gone = ev.deleted(flights, 2n);
    await publish([renamed, gone]);
    await statsAfter(user, gone);
    expect((await client.searchTasks({ query: "gro" })).hits).toEqual([]);
    expect((await client.searchTasks({ query: "veg" })).hits.map((h) => h.taskId)).toEqual([groceries.id]);
    expect((await client.searchTasks({ query: "milk" })).hits.map((h) => h.taskId)).toEqual([groceries.id]);
    expect((await client.searchTasks({ query: "lisbon" })).hits).toEqual([]);
  });

  it("returns 20 hits by default and at most the limit asked for", async () => {
    const user = newUser(["weekly"]);
    const events = Array.from({ length: 25 }, (_, i) => ev.created(task(user, { title: `Weekly review ${i}` })));
    await publish(events);
    await statsAfter(user, events[24] as Envelope);
    const client = await clientFor(user);
    expect((await client.searchTasks({ query: "week" })).hits).toHaveLength(20);
    expect((await client.searchTasks({ query: "week", limit: 5 })).hits).toHaveLength(5);
    expect((await client.searchTasks({ query: "week", limit: 50 })).hits).toHaveLength(25);
    const tooMany = await client.searchTasks({ query: "week", limit: 51 }).catch((e: unknown) => e);
    expect(tooMany).toBeInstanceOf(ConnectError);
    expect((tooMany as ConnectError).code).toBe(Code.InvalidArgument);
  });

  it("refuses a call without a user token", async () => {
    const anonymous = createGrpcClient(AnalyticsService, { address });
    clients.push(anonymous);
    const err = await anonymous.getStats({}).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
  });

  it("drops a deleted user's rows, and ignores task events of that user arriving afterwards", async () => {
    const user = newUser(["gone"]);
    const t = task(user, { title: "Gone soon" });
    const created = ev.created(t);
    await publish([ev.registered(user, "Europe/Paris"), created]);
    expect(counts(await statsAfter(user, created)).created).toBe(1);

    const deleted = ev.userDeleted(user);
    await publish([deleted]);
    const client = await clientFor(user);
    await waitFor("the user's rows to be dropped", async () => {
      const { stats } = await client.getStats({});
      return stats && stats.createdCount === 0n && stats.asOfTime === undefined;
    });
    expect((await client.searchTasks({ query: "gone" })).hits).toEqual([]);

    // The TASKS stream is consumed independently of USERS: a late task event must not bring the user back.
    const late = ev.created(task(user, { title: "Gone but late" }));
    const marker = newUser();
    const markerEvent = ev.created(task(marker, { title: "marker" }));
    await publish([late, markerEvent]);
    await statsAfter(marker, markerEvent); // TASKS has folded everything before the marker
    const { stats } = await client.getStats({});
    expect(stats && counts(stats)).toEqual({ created: 0, completed: 0, open: 0, overdue: 0, rate: 0, streak: 0 });
    expect((await client.searchTasks({ query: "gone" })).hits).toEqual([]);
  });

  it("rebuilds, by replaying the streams into a fresh database, the same answers as the live read models", async () => {
    // Wait until the live consumers have folded everything published so far.
    const jsm = await admin.jetstreamManager();
    await waitFor("the live consumers to catch up", async () => {
      for (const s of ["TASKS", "USERS"]) {
        const info = await jsm.consumers
          .info(s, `analytics-${analytics.generation}-${s.toLowerCase()}`)
          .catch(() => undefined); // not created yet
        if (!info || info.num_pending > 0 || info.num_ack_pending > 0) return false;
      }
      return true;
    });

    const rebuilt = join(dir.path, "rebuilt.db");
    const { stdout } = await promisify(execFile)(process.execPath, [REBUILD, "--db", rebuilt], {
      env: { ...process.env, NATS_URL: nats.url, LOG_LEVEL: "silent" },
      timeout: 30_000,
    });
    const summary = JSON.parse(stdout) as { generation: string; streams: { stream: string; folded: number }[] };
    expect(summary.generation).not.toBe(analytics.generation);
    expect(summary.streams.find((s) => s.stream === "TASKS")?.folded).toBeGreaterThan(40);

    const second = await startAnalytics(rebuilt);
    try {
      expect(users.size).toBeGreaterThanOrEqual(7);
      for (const [user, queries] of users) {
        const live = await clientFor(user);
        const copy = await clientFor(user, second.address);
        expect(await copy.getStats({}), user).toEqual(await live.getStats({}));
        for (const query of queries) {
          const want = await live.searchTasks({ query, limit: 50 });
          expect(await copy.searchTasks({ query, limit: 50 }), query).toEqual(want);
        }
      }
      // The service on the rebuilt database goes on folding what is published after the rebuild,
      // and does not fold again what the rebuild folded.
      const user = newUser();
      const after = ev.created(task(user, { title: "After the rebuild" }));
      await publish([after]);
      expect(counts(await statsAfter(user, after, second.address)).created).toBe(1);
      expect(counts(await statsAfter(user, after)).created).toBe(1);
      await waitFor("the replayed events to be skipped", () => second.app.consumerStats().TASKS?.duplicates ?? 0);
      expect(second.app.consumerStats().TASKS?.applied).toBe(1);
    } finally {
      await second.app.shutdown();
    }
  });

  it("refuses to rebuild into an existing file", async () => {
    const err = await promisify(execFile)(process.execPath, [REBUILD, "--db", join(dir.path, "analytics.db")], {
      env: { ...process.env, NATS_URL: nats.url, LOG_LEVEL: "silent" },
      timeout: 30_000,
    }).catch((e: unknown) => e as { code: number; stderr: string });
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toMatch(/exists; the rebuild writes a fresh database only/);
  });
});
