import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import * as reflectionV1 from "@taskmesh/gen/grpc/reflection/v1/reflection_pb";
import * as reflectionV1alpha from "@taskmesh/gen/grpc/reflection/v1alpha/reflection_pb";
import { NotificationInternalService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskInternalService, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createLogger, USER_TOKEN_AUDIENCE, USER_TOKEN_ISSUER } from "@taskmesh/platform";
import { freePort, tempDir } from "@taskmesh/platform/testing";
import { build as buildTasks, loadTasksConfig, type TasksApp } from "@taskmesh/tasks/server";
import { build as buildUsers, loadUsersConfig, type UsersApp } from "@taskmesh/users/server";
import { type CryptoKey, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadGatewayConfig } from "./config.js";
import { build, type GatewayApp } from "./server.js";

const logger = createLogger("gateway-test", { level: "silent" });
const SECRET = "gateway-test-secret-of-at-least-32-chars";
const PASSWORD = "correct horse battery";

let dir: ReturnType<typeof tempDir>;
let users: UsersApp;
let tasks: TasksApp;
let gateway: GatewayApp;
let baseUrl: string;
let env: Record<string, string>;

beforeAll(async () => {
  dir = tempDir("gateway-test-");
  users = buildUsers(
    loadUsersConfig({
      GRPC_PORT: "0",
      JWKS_PORT: "0",
      TASKMESH_DATA_DIR: dir.path,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    }),
    { logger, scrypt: { N: 1024, r: 8, p: 1 } },
  );
  const u = await users.listen();
  const jwksUrl = `http://127.0.0.1:${u.httpPort}/.well-known/jwks.json`;
  tasks = buildTasks(
    loadTasksConfig({
      GRPC_PORT: "0",
      TASKMESH_DATA_DIR: dir.path,
      JWKS_URL: jwksUrl,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    }),
    { logger },
  );
  const t = await tasks.listen();
  env = {
    GRPC_PORT: "0",
    USERS_ADDR: `127.0.0.1:${u.grpcPort}`,
    TASKS_ADDR: `127.0.0.1:${t.grpcPort}`,
    JWKS_URL: jwksUrl,
    SHUTDOWN_GRACE_MS: "2000",
    LOG_LEVEL: "silent",
    // These suites sign up many users from one address; rate limits have their own tests.
    RATE_LIMIT_RPS: "0",
    LOGIN_RATE_LIMIT_PER_MINUTE: "0",
  };
  gateway = build(loadGatewayConfig(env), { logger });
  baseUrl = `http://127.0.0.1:${(await gateway.listen()).grpcPort}`;
});

afterAll(async () => {
  await gateway?.shutdown();
  await tasks?.shutdown();
  await users?.shutdown();
  dir?.remove();
});

const connectHttp1 = () => createConnectTransport({ baseUrl, httpVersion: "1.1" });
const grpcH2c = () => createGrpcTransport({ baseUrl });
const transports: Record<string, () => Transport> = {
  "Connect over HTTP/1.1": connectHttp1,
  "Connect over h2c": () => createConnectTransport({ baseUrl, httpVersion: "2" }),
  "gRPC over h2c": grpcH2c,
  "gRPC-Web over HTTP/1.1": () => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
};

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(e)}`);
  return e;
}

/** Registers a fresh user through the gateway and logs in; returns the id and token. */
async function newUser(transport: Transport = grpcH2c()) {
  const client = createClient(UserService, transport);
  const email = `u-${crypto.randomUUID()}@example.com`;
  const registered = await client.register({ email, password: PASSWORD });
  const login = await client.login({ email, password: PASSWORD });
  return { id: registered.user?.id ?? "", email, token: login.accessToken };
}

describe("gateway", () => {
  for (const [name, transport] of Object.entries(transports)) {
    it(`serves the public API over ${name}: register, log in, create, get, list, complete, delete`, async () => {
      const t = transport();
      const me = await newUser(t);
      const userClient = createClient(UserService, t);
      expect((await userClient.getMe({}, bearer(me.token))).user?.email).toBe(me.email);
      const client = createClient(TaskService, t);
      const created = await client.createTask(
        {
          task: {
            title: `weekly review (${name})`,
            dueTime: timestampFromDate(new Date("2030-01-07T14:00:00Z")),
            timeZone: "America/New_York",
            recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
            reminderOffsets: [{ seconds: 3600n }],
          },
        },
        bearer(me.token),
      );
      const id = created.task?.id ?? "";
      expect(created.task?.userId).toBe(me.id);
      expect((await client.getTask({ taskId: id }, bearer(me.token))).task?.title).toContain(name);
      expect((await client.listTasks({}, bearer(me.token))).tasks.map((x) => x.id)).toEqual([id]);
      await client.completeTask({ taskId: id }, bearer(me.token));
      await client.deleteTask({ taskId: id }, bearer(me.token));
      expect((await errorOf(client.getTask({ taskId: id }, bearer(me.token)))).code).toBe(Code.NotFound);
    });
  }

  it("answers plain fetch with Connect JSON (what curl sends), errors as Connect JSON with the backend's code", async () => {
    const email = `curl-${crypto.randomUUID()}@example.com`;
    const post = (path: string, body: unknown, token?: string) =>
      fetch(`${baseUrl}/${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
    expect((await post("taskmesh.users.v1.UserService/Register", { email, password: PASSWORD })).status).toBe(200);
    const login = await post("taskmesh.users.v1.UserService/Login", { email, password: PASSWORD });
    const { accessToken } = (await login.json()) as { accessToken: string };
    expect(login.headers.get("x-request-id")).toMatch(/.+/);
    const created = await post(
      "taskmesh.tasks.v1.TaskService/CreateTask",
      { task: { title: "from curl", dueTime: "2030-01-07T14:00:00Z", reminderOffsets: ["3600s"] } },
      accessToken,
    );
    expect(created.status).toBe(200);
    expect(((await created.json()) as { task: { title: string } }).task.title).toBe("from curl");
    const missing = await post("taskmesh.tasks.v1.TaskService/GetTask", { taskId: crypto.randomUUID() }, accessToken);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe("not_found");
  });

  it("passes backend codes through unchanged: NOT_FOUND, INVALID_ARGUMENT naming the field, ALREADY_EXISTS", async () => {
    const t = grpcH2c();
    const me = await newUser(t);
    const tasksClient = createClient(TaskService, t);
    const nf = await errorOf(tasksClient.getTask({ taskId: crypto.randomUUID() }, bearer(me.token)));
    expect(nf.code).toBe(Code.NotFound);
    const bad = await errorOf(tasksClient.createTask({ task: { title: "x".repeat(501) } }, bearer(me.token)));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toContain("task.title");
    const rrule = await errorOf(
      tasksClient.createTask({ task: { title: "bad rule", recurrenceRule: "FREQ=SOMETIMES" } }, bearer(me.token)),
    );
    expect(rrule.code).toBe(Code.InvalidArgument);
    const dup = await errorOf(createClient(UserService, t).register({ email: me.email, password: PASSWORD }));
    expect(dup.code).toBe(Code.AlreadyExists);
    expect((await tasksClient.listTasks({}, bearer(me.token))).tasks).toEqual([]);
  });

  describe("authentication at the edge", () => {
    const client = () => createClient(TaskService, connectHttp1());
    const signed = async (key: CryptoKey, kid: string, exp: string | number) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "EdDSA", kid })
        .setSubject(crypto.randomUUID())
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
        .setExpirationTime(exp)
        .sign(key);

    it("rejects a call without a token, or with a malformed one, as UNAUTHENTICATED", async () => {
      expect((await errorOf(client().listTasks({}))).code).toBe(Code.Unauthenticated);
      expect((await errorOf(client().listTasks({}, bearer("not-a-jwt")))).code).toBe(Code.Unauthenticated);
      const basic = await errorOf(client().listTasks({}, { headers: { authorization: "Basic dXNlcjpwYXNz" } }));
      expect(basic.code).toBe(Code.Unauthenticated);
    });

    it("rejects an expired token signed with the real key", async () => {
      const { kid, privateKey } = users.keys.current;
      const expired = await signed(privateKey, kid, Math.floor(Date.now() / 1000) - 3600);
      const e = await errorOf(client().listTasks({}, bearer(expired)));
      expect(e.code).toBe(Code.Unauthenticated);
      expect(e.rawMessage).toContain("expired");
    });

    it("rejects a token signed by another key under the real kid", async () => {
      const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
      const forged = await signed(privateKey, users.keys.current.kid, "10m");
      const e = await errorOf(client().listTasks({}, bearer(forged)));
      expect(e.code).toBe(Code.Unauthenticated);
      expect(e.rawMessage).toContain("signature");
    });

    it("ignores a forged x-user-id header: the identity comes from the verified token only", async () => {
      const owner = await newUser();
      const other = await newUser();
      const t = connectHttp1();
      const created = await createClient(TaskService, t).createTask(
        { task: { title: "owner's secret" } },
        bearer(owner.token),
      );
      const forged = { authorization: `Bearer ${other.token}`, "x-user-id": owner.id };
      const list = await createClient(TaskService, t).listTasks({}, { headers: forged });
      expect(list.tasks).toEqual([]);
      const get = await errorOf(
        createClient(TaskService, t).getTask({ taskId: created.task?.id ?? "" }, { headers: forged }),
      );
      expect(get.code).toBe(Code.NotFound);
      const noToken = await errorOf(createClient(TaskService, t).listTasks({}, { headers: { "x-user-id": owner.id } }));
      expect(noToken.code).toBe(Code.Unauthenticated);
    });
  });

  it("does not expose internal services: gRPC gets UNIMPLEMENTED, plain HTTP gets 404", async () => {
    const me = await newUser();
    const internal = createClient(TaskInternalService, grpcH2c());
    const e = await errorOf(internal.purgeUser({ userId: me.id }, bearer(me.token)));
    expect(e.code).toBe(Code.Unimplemented);
    const web = createClient(TaskInternalService, createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }));
    expect((await errorOf(web.purgeUser({ userId: me.id }, bearer(me.token)))).code).toBe(Code.Unimplemented);
    const inboxPurge = createClient(NotificationInternalService, grpcH2c());
    expect((await errorOf(inboxPurge.purgeUser({ userId: me.id }, bearer(me.token)))).code).toBe(Code.Unimplemented);
    const res = await fetch(`${baseUrl}/taskmesh.users.v1.UserInternalService/GetUserPreferences`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${me.token}` },
      body: JSON.stringify({ userId: me.id }),
    });
    expect(res.status).toBe(404);
  });

  it("lists the public services (the forwarded ones and the dashboard) and health by reflection (v1 and v1alpha), and never the internal ones", async () => {
    const t = grpcH2c();
    const expected = [
      "grpc.health.v1.Health",
      "taskmesh.analytics.v1.AnalyticsService",
      "taskmesh.gateway.v1.DashboardService",
      "taskmesh.notifications.v1.NotificationService",
      "taskmesh.tasks.v1.TaskService",
      "taskmesh.users.v1.UserService",
    ];
    for (const v of [reflectionV1, reflectionV1alpha]) {
      const client = createClient(v.ServerReflection as typeof reflectionV1.ServerReflection, t);
      async function* requests() {
        yield { messageRequest: { case: "listServices" as const, value: "*" } };
        yield { messageRequest: { case: "fileContainingSymbol" as const, value: "taskmesh.tasks.v1.TaskService" } };
      }
      const answers = [];
      for await (const res of client.serverReflectionInfo(requests())) answers.push(res.messageResponse);
      expect(answers[0]?.case).toBe("listServicesResponse");
      const names = answers[0]?.case === "listServicesResponse" ? answers[0].value.service.map((s) => s.name) : [];
      expect(names.sort()).toEqual(expected);
      expect(answers[1]?.case).toBe("fileDescriptorResponse");
      if (answers[1]?.case === "fileDescriptorResponse")
        expect(answers[1].value.fileDescriptorProto.length).toBeGreaterThan(0);
    }
  });

  it("is listed by `buf curl --protocol grpc --http2-prior-knowledge --list-services`", async () => {
    const require = createRequire(import.meta.url);
    const buf = join(dirname(require.resolve("@bufbuild/buf/package.json")), "bin", "buf");
    const { stdout } = await promisify(execFile)(buf, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--list-services",
      baseUrl,
    ]);
    expect(stdout.trim().split("\n").sort()).toEqual([
      "grpc.health.v1.Health",
      "taskmesh.analytics.v1.AnalyticsService",
      "taskmesh.gateway.v1.DashboardService",
      "taskmesh.notifications.v1.NotificationService",
      "taskmesh.tasks.v1.TaskService",
      "taskmesh.users.v1.UserService",
    ]);
  });

  it("reports health: the edge itself, each public service from its backend, each dependency's breaker, NOT_FOUND for others", async () => {
    const health = createClient(Health, grpcH2c());
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    for (const name of ["users", "tasks", "notifications", "analytics"])
      expect((await health.check({ service: `dependency.${name}` })).status).toBe(
        HealthCheckResponse_ServingStatus.SERVING,
      );
    expect((await health.check({ service: "taskmesh.tasks.v1.TaskService" })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    const e = await errorOf(health.check({ service: "taskmesh.tasks.v1.TaskInternalService" }));
    expect(e.code).toBe(Code.NotFound);
  });

  it("answers UNAVAILABLE, not UNAUTHENTICATED, when the key set cannot be fetched", async () => {
    const me = await newUser();
    const blind = build(loadGatewayConfig({ ...env, JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks.json` }), {
      logger,
    });
    const port = (await blind.listen()).grpcPort;
    try {
      const t = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
      const e = await errorOf(createClient(TaskService, t).listTasks({}, bearer(me.token)));
      expect(e.code).toBe(Code.Unavailable);
    } finally {
      await blind.shutdown();
    }
  });

  it("answers UNAVAILABLE (not INTERNAL) when a backend is down, and NOT_SERVING for its service", async () => {
    const me = await newUser();
    const down = build(loadGatewayConfig({ ...env, TASKS_ADDR: `127.0.0.1:${await freePort()}` }), { logger });
    const port = (await down.listen()).grpcPort;
    try {
      const t = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
      const e = await errorOf(createClient(TaskService, t).listTasks({}, bearer(me.token)));
      expect(e.code).toBe(Code.Unavailable);
      const status = await createClient(Health, t).check({ service: "taskmesh.tasks.v1.TaskService" });
      expect(status.status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      // The other backend is unaffected.
      expect((await createClient(UserService, t).getMe({}, bearer(me.token))).user?.id).toBe(me.id);
    } finally {
      await down.shutdown();
    }
  });
});
