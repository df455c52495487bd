import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { type Task, TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../log/logger.js";
import { stubService } from "../testing/service-stub.js";
import { createGrpcClient } from "./grpc-client.js";
import { GrpcServer, register } from "./grpc-server.js";

const logger = createLogger("test", { level: "silent" });

describe("GrpcServer", () => {
  let server: GrpcServer;
  let port: number;
  const tasks = new Map<string, Task>();
  beforeAll(async () => {
    server = new GrpcServer({
      name: "test",
      logger,
      userTokens: {
        verify: async () => {
          throw new ConnectError("invalid token", Code.Unauthenticated);
        },
      },
      services: [
        register(
          TaskService,
          stubService(
            TaskService,
            {
              createTask(req) {
                const task = create(TaskSchema, {
                  id: crypto.randomUUID(),
                  title: req.task?.title ?? "",
                  status: TaskStatus.OPEN,
                });
                tasks.set(task.id, task);
                return { task };
              },
              getTask(req) {
                const task = tasks.get(req.taskId);
                if (!task) throw new ConnectError(`task ${req.taskId} not found`, Code.NotFound);
                return { task };
              },
              listTasks: () => {
                throw new Error("boom: /secret/path.db SELECT * FROM x");
              },
            },
            "empty",
          ),
          { kind: "user", anonymous: ["createTask", "getTask", "listTasks"] },
        ),
      ],
    });
    port = await server.listen(0);
  });
  afterAll(() => server.shutdown(1000));

  it("serves a typed handler over a real socket and validates the request", async () => {
    const client = createGrpcClient(TaskService, { address: `127.0.0.1:${port}` });
    const res = await client.createTask({ task: { title: "write tests" } });
    expect(res.task?.title).toBe("write tests");
    const got = await client.getTask({ taskId: res.task?.id ?? "" });
    expect(got.task?.id).toBe(res.task?.id);
    const bad = await client.createTask({ task: { title: "" } }).catch((e) => e);
    expect(bad).toBeInstanceOf(ConnectError);
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toContain("task.title");
    client.close();
  });

  it("passes handler codes through and hides unexpected errors", async () => {
    const client = createGrpcClient(TaskService, { address: `127.0.0.1:${port}` });
    const nf = await client.getTask({ taskId: crypto.randomUUID() }).catch((e) => e);
    expect(nf.code).toBe(Code.NotFound);
    const internal = await client.listTasks({}).catch((e) => e);
    expect(internal.code).toBe(Code.Internal);
    expect(internal.rawMessage).toBe("internal error");
    const unauth = await client.updateTask({ taskId: crypto.randomUUID() }).catch((e) => e);
    expect(unauth.code).toBe(Code.Unauthenticated);
    client.close();
  });
});

describe("GrpcServer call contexts", () => {
  // connect links a handler context to the server's shutdown signal with a listener (and a
  // deadline timer) that are released only when the context is aborted; a context left open after
  // its call would keep both for as long as the server runs.
  it("ends each call's context when the call ends, on success and on error", async () => {
    const seen: HandlerContext[] = [];
    const server = new GrpcServer({
      name: "contexts",
      logger,
      services: [
        register(
          TaskService,
          stubService(
            TaskService,
            {
              getTask: (_req, ctx) => {
                seen.push(ctx);
                throw new ConnectError("no such task", Code.NotFound);
              },
              createTask: (_req, ctx) => {
                seen.push(ctx);
                return {};
              },
            },
            "empty",
          ),
          { kind: "user", anonymous: ["getTask", "createTask", "listTasks"] },
        ),
      ],
    });
    const port = await server.listen(0);
    const client = createGrpcClient(TaskService, { address: `127.0.0.1:${port}` });
    await client.createTask({ task: { title: "t" } });
    expect(seen[0]?.signal.aborted).toBe(true);
    await client.getTask({ taskId: crypto.randomUUID() }).catch(() => undefined);
    expect(seen).toHaveLength(2);
    expect(seen[1]?.signal.aborted).toBe(true);
    expect(server.shutdownSignal.aborted).toBe(false);
    client.close();
    await server.shutdown(500);
  });
});
