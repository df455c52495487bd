import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { TaskSchema } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../log/logger.js";
import { stubService } from "../testing/service-stub.js";
import { createGrpcClient, serviceConfig } from "./grpc-client.js";
import { GrpcServer, register } from "./grpc-server.js";

/** A backend whose first `failures` calls of each method answer UNAVAILABLE, then succeed. */
describe("createGrpcClient", () => {
  let server: GrpcServer;
  let address: string;
  let failures = 0;
  const calls = { getTask: 0, createTask: 0 };
  /** When each call arrived (performance.now()), to measure the backoff between attempts. */
  const arrivals: number[] = [];
  const unavailableOr = <T>(method: keyof typeof calls, ok: () => T): T => {
    calls[method]++;
    arrivals.push(performance.now());
    if (calls[method] <= failures) throw new ConnectError("backend warming up", Code.Unavailable);
    return ok();
  };
  const task = () => ({ task: create(TaskSchema, { id: crypto.randomUUID(), title: "t" }) });

  beforeAll(async () => {
    server = new GrpcServer({
      name: "flaky",
      logger: createLogger("test", { level: "silent" }),
      services: [
        register(
          TaskService,
          stubService(TaskService, {
            getTask: () => unavailableOr("getTask", task),
            createTask: () => unavailableOr("createTask", task),
          }),
          { kind: "user", anonymous: ["getTask", "createTask"] },
        ),
      ],
    });
    address = `127.0.0.1:${await server.listen(0)}`;
  });
  afterAll(() => server.shutdown(1000));
  beforeEach(() => {
    calls.getTask = 0;
    calls.createTask = 0;
    arrivals.length = 0;
  });

  it("retries UNAVAILABLE on a method the contract marks idempotent, and succeeds", async () => {
    failures = 2;
    const client = createGrpcClient(TaskService, { address });
    const res = await client.getTask({ taskId: crypto.randomUUID() });
    expect(res.task?.title).toBe("t");
    expect(calls.getTask).toBe(3);
    client.close();
  });

  it("does not retry a method that is not idempotent", async () => {
    failures = 1;
    const client = createGrpcClient(TaskService, { address });
    const err = await client.createTask({ task: { title: "x" } }).catch((e) => e);
    expect(err.code).toBe(Code.Unavailable);
    expect(calls.createTask).toBe(1);
    client.close();
  });

  it("does not retry at all when retries are left to the mesh", async () => {
    failures = 1;
    const client = createGrpcClient(TaskService, { address, retries: false });
    const err = await client.getTask({ taskId: crypto.randomUUID() }).catch((e) => e);
    expect(err.code).toBe(Code.Unavailable);
    expect(calls.getTask).toBe(1);
    client.close();
  });

  it("retries a create listed as safe (it carries an idempotency key)", async () => {
    failures = 1;
    const client = createGrpcClient(TaskService, { address, retryableMethods: ["CreateTask"] });
    await client.createTask({ task: { title: "x" }, idempotencyKey: "k1" });
    expect(calls.createTask).toBe(2);
    client.close();
  });

  it("fails fast with DEADLINE_EXCEEDED when the parent call has no time left", async () => {
    const client = createGrpcClient(TaskService, { address });
    const parent = { timeoutMs: () => 0, signal: new AbortController().signal } as never;
    const err = await client.getTask({ taskId: crypto.randomUUID() }, { parent }).catch((e) => e);
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(calls.getTask).toBe(0);
    client.close();
  });

  it("waits 50, 100, 200 ms (each ±20 %) before the 2nd, 3rd and 4th attempt", async () => {
    failures = 3;
    const client = createGrpcClient(TaskService, { address });
    await client.getTask({ taskId: crypto.randomUUID() });
    const gaps = arrivals.slice(1).map((t, i) => t - (arrivals[i] as number));
    expect(gaps).toHaveLength(3);
    // Lower bounds are exact (the client waits at least this long after the failure); the upper
    // ones leave room for a slow machine.
    [50, 100, 200].forEach((backoff, i) => {
      expect(gaps[i]).toBeGreaterThanOrEqual(backoff * 0.8 - 1);
      expect(gaps[i]).toBeLessThan(backoff * 1.2 + 40);
    });
    client.close();
  });

  it("jitters the backoff, so callers that failed together do not retry in lockstep", async () => {
    failures = 1;
    const client = createGrpcClient(TaskService, { address });
    const firstGaps: number[] = [];
    for (let i = 0; i < 8; i++) {
      calls.getTask = 0;
      arrivals.length = 0;
      await client.getTask({ taskId: crypto.randomUUID() });
      firstGaps.push((arrivals[1] as number) - (arrivals[0] as number));
    }
    // Uniform in [40, 60] ms: eight draws all within 3 ms of each other is ~1e-5 likely.
    expect(Math.max(...firstGaps) - Math.min(...firstGaps)).toBeGreaterThan(3);
    client.close();
  });

  it("balances round_robin with outlier detection, and plain round_robin when the mesh owns resilience", () => {
    const lb = (o: Parameters<typeof serviceConfig>[1]) =>
      JSON.stringify(serviceConfig(TaskService, o).loadBalancingConfig);
    expect(lb({})).toContain('"outlier_detection"');
    expect(lb({})).toContain('"round_robin"');
    expect(lb({ retries: false })).toBe('[{"round_robin":{}}]');
    expect(lb({ retries: false, outlierDetection: {} })).toContain('"outlier_detection"');
    expect(lb({ outlierDetection: false })).toBe('[{"round_robin":{}}]');
  });

  it("builds a retry policy naming only idempotent methods", () => {
    const cfg = serviceConfig(TaskService, {});
    const names = cfg.methodConfig[0]?.name.map((n) => n.method).sort();
    // ReopenTask is IDEMPOTENT (reopening an open task returns it unchanged); CreateTask and UpdateTask are not.
    // RevokeCalendarFeed is IDEMPOTENT, GetCalendarFeed a read; RotateCalendarFeed (a new secret each time) is not.
    // Of the project/label methods, the creates are not (no idempotency key); moves, renames,
    // (un)archiving and deletes are, like DeleteTask.
    // Sharing: InviteToProject and AcceptInvitation are not (a lost answer's retry is
    // ALREADY_EXISTS / NOT_FOUND); declining, role changes and removals are, like DeleteTask.
    // WatchProject is a server stream: never retried (its client reconnects and lists again).
    expect(TaskService.method.watchProject.methodKind).toBe("server_streaming");
    expect(names).not.toContain("WatchProject");
    expect(names).toEqual([
      "CompleteTask",
      "DeclineInvitation",
      "DeleteLabel",
      "DeleteProject",
      "DeleteTask",
      "GetCalendarFeed",
      "GetTask",
      "ListInvitations",
      "ListLabels",
      "ListMembers",
      "ListProjects",
      "ListTasks",
      "MoveProject",
      "MoveTask",
      "RemoveMember",
      "ReopenTask",
      "RevokeCalendarFeed",
      "UpdateLabel",
      "UpdateMember",
      "UpdateProject",
    ]);
  });
});
