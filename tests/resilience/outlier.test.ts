// Client-side outlier detection (issue 4, item 2), focused: two replicas of TaskService as
// in-process GrpcServers on two ports, one client with the target `ipv4:127.0.0.1:a,127.0.0.1:b`
// as `npm start -- --replicas tasks=2` hands it to callers. Each replica counts the calls it gets,
// so a test sees where round_robin sends traffic once outlier detection has decided.
// The same with real processes is in replicas.test.ts.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { TaskSchema } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { createGrpcClient, createLogger, type GrpcClient, GrpcServer, register } from "@taskmesh/platform";
import { stubService } from "@taskmesh/platform/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

type Mode = "ok" | "unavailable" | "hang" | "business";

/** Answers a healthy replica gives to requests it must refuse: none of them says anything about the replica. */
const BUSINESS = [
  new ConnectError("task not found", Code.NotFound),
  new ConnectError("title: value length must be at most 500 characters", Code.InvalidArgument),
  new ConnectError("already exists", Code.AlreadyExists),
  new ConnectError("task is completed", Code.FailedPrecondition),
  new ConnectError("not yours", Code.PermissionDenied),
];

interface Replica {
  server: GrpcServer;
  port: number;
  mode: Mode;
  calls: number;
}

/** Short interval so a test sees several decisions; a long ejection unless a test wants it back. */
const FAST = { intervalMs: 200, baseEjectionMs: 60_000, minRequests: 5 };

describe("outlier detection across two replicas", () => {
  const replicas: Replica[] = [];
  let client: GrpcClient<typeof TaskService> | undefined;

  const replica = async (): Promise<Replica> => {
    const r = { mode: "ok" as Mode, calls: 0 } as Replica;
    const createTask = async (_req: unknown, ctx: HandlerContext) => {
      r.calls++;
      if (r.mode === "unavailable") throw new ConnectError("replica is broken", Code.Unavailable);
      if (r.mode === "business") throw BUSINESS[r.calls % BUSINESS.length];
      if (r.mode === "hang") await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      return { task: create(TaskSchema, { id: crypto.randomUUID(), title: "t" }) };
    };
    r.server = new GrpcServer({
      name: `tasks-${replicas.length + 1}`,
      logger: createLogger("test", { level: "silent" }),
      services: [
        register(
          TaskService,
          stubService(TaskService, {
            createTask,
          }),
          { kind: "user", anonymous: ["createTask"] },
        ),
      ],
    });
    r.port = await r.server.listen(0);
    return r;
  };
  const a = () => replicas[0] as Replica;
  const b = () => replicas[1] as Replica;
  const target = () => `ipv4:${replicas.map((r) => `127.0.0.1:${r.port}`).join(",")}`;

  /** CreateTask is not idempotent, so never retried: each call reaches exactly one replica and its outcome shows. */
  const call = async (timeoutMs = 1000) => {
    try {
      await client?.createTask({ task: { title: "t" } }, { timeoutMs });
      return "OK";
    } catch (err) {
      return Code[(err as ConnectError).code];
    }
  };
  /** Calls one after another for `ms`: the traffic outlier detection decides on. */
  const drive = async (ms: number, timeoutMs?: number) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await call(timeoutMs);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  /** `n` calls after the decision: what the caller gets, and where they went. */
  const burst = async (n: number, timeoutMs?: number) => {
    for (const r of replicas) r.calls = 0;
    const outcomes: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const code = await call(timeoutMs);
      outcomes[code] = (outcomes[code] ?? 0) + 1;
    }
    return { outcomes, a: a().calls, b: b().calls };
  };

  beforeAll(async () => {
    replicas.push(await replica(), await replica());
  });
  afterEach(() => {
    client?.close();
    client = undefined;
    for (const r of replicas) {
      r.mode = "ok";
      r.calls = 0;
    }
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.server.shutdown(1000)));
  });

  it("spreads calls evenly over healthy replicas (round_robin)", async () => {
    client = createGrpcClient(TaskService, { address: target(), outlierDetection: FAST });
    await drive(300);
    const res = await burst(40);
    expect(res.outcomes).toEqual({ OK: 40 });
    expect(res.a).toBe(20);
    expect(res.b).toBe(20);
  });

  it("ejects a replica that answers UNAVAILABLE to every call, and then every call succeeds", async () => {
    b().mode = "unavailable";
    client = createGrpcClient(TaskService, { address: target(), outlierDetection: FAST });
    await drive(700);
    const res = await burst(40);
    expect(res.outcomes).toEqual({ OK: 40 });
    expect(res.b).toBe(0);
  });

  it("ejects a replica that hangs until the caller's deadline", async () => {
    b().mode = "hang";
    // Each hanging call takes its whole deadline: a longer interval, so it holds enough of them.
    client = createGrpcClient(TaskService, { address: target(), outlierDetection: { ...FAST, intervalMs: 500 } });
    await drive(1600, 40);
    const res = await burst(20, 40);
    expect(res.outcomes).toEqual({ OK: 20 });
    expect(res.b).toBe(0);
  });

  it("keeps a healthy replica that answers NOT_FOUND, INVALID_ARGUMENT and other business errors to every call", async () => {
    b().mode = "business";
    client = createGrpcClient(TaskService, { address: target(), outlierDetection: FAST });
    await drive(700);
    const res = await burst(40);
    // Its share stays half: the errors are its answers, not its failures.
    expect(res.b).toBe(20);
    expect(res.outcomes.OK).toBe(20);
  });

  it("keeps both replicas when every request is refused (a client sending only bad requests)", async () => {
    a().mode = "business";
    b().mode = "business";
    client = createGrpcClient(TaskService, { address: target(), outlierDetection: FAST });
    await drive(700);
    const res = await burst(40);
    expect(res.a).toBe(20);
    expect(res.b).toBe(20);
  });

  it("would eject that healthy replica with grpc-js's outlier_detection alone, which counts every non-OK status", async () => {
    // Why outlier-detection.ts puts a status filter above grpc-js's policy.
    b().mode = "business";
    const plain = {
      loadBalancingConfig: [
        {
          outlier_detection: {
            interval: { seconds: 0, nanos: 200_000_000 },
            base_ejection_time: { seconds: 60, nanos: 0 },
            max_ejection_percent: 50,
            failure_percentage_ejection: { threshold: 50, minimum_hosts: 2, request_volume: 5 },
            child_policy: [{ round_robin: {} }],
          },
        },
      ],
    };
    client = createGrpcClient(TaskService, {
      address: target(),
      channelOptions: { "grpc.service_config": JSON.stringify(plain) },
    });
    await drive(700);
    const res = await burst(40);
    expect(res.b).toBe(0);
  });

  it("takes an ejected replica back once the ejection time is over and it is healthy again", async () => {
    b().mode = "unavailable";
    client = createGrpcClient(TaskService, { address: target(), outlierDetection: { ...FAST, baseEjectionMs: 1500 } });
    await drive(700);
    expect((await burst(10)).b).toBe(0);
    b().mode = "ok";
    await drive(2000);
    const res = await burst(40);
    expect(res.outcomes).toEqual({ OK: 40 });
    expect(res.b).toBe(20);
  });

  it("does not eject anything when the mesh owns resilience (retries: false)", async () => {
    b().mode = "unavailable";
    client = createGrpcClient(TaskService, { address: target(), retries: false });
    await drive(700);
    const res = await burst(40);
    expect(res.b).toBe(20);
    expect(res.outcomes).toEqual({ OK: 20, Unavailable: 20 });
  });
});
