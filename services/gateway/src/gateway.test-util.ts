import type { DescService } from "@bufbuild/protobuf";
import { ConnectError, createClient, type ServiceImpl, type Transport } from "@connectrpc/connect";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createLogger, createUserTokenVerifier, GrpcServer, register } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { build as buildTasks, loadTasksConfig, type TasksApp } from "@taskmesh/tasks/server";
import { build as buildUsers, loadUsersConfig, type UsersApp } from "@taskmesh/users/server";
import { createRemoteJWKSet } from "jose";

export const logger = createLogger("gateway-test", { level: "silent" });
export const SECRET = "gateway-test-secret-of-at-least-32-chars";
export const PASSWORD = "correct horse battery";

export interface Backends {
  users: UsersApp;
  tasks: TasksApp;
  jwksUrl: string;
  /** The temp dir holding the SQLite files (other in-process services may put theirs here too). */
  dataDir: string;
  /** Gateway environment pointing at these backends (GRPC_PORT 0, silent logs). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * The real users and tasks services in-process: temp SQLite files, port 0. With `natsUrl` they
 * publish their events there (otherwise the events wait in their outboxes).
 */
export async function startBackends(prefix = "gateway-test-", opts: { natsUrl?: string } = {}): Promise<Backends> {
  const dir = tempDir(prefix);
  const nats = opts.natsUrl ? { NATS_URL: opts.natsUrl } : {};
  const users = buildUsers(
    loadUsersConfig({
      GRPC_PORT: "0",
      JWKS_PORT: "0",
      TASKMESH_DATA_DIR: dir.path,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
      ...nats,
    }),
    { logger, scrypt: { N: 1024, r: 8, p: 1 } },
  );
  const u = await users.listen();
  const jwksUrl = `http://127.0.0.1:${u.httpPort}/.well-known/jwks.json`;
  const tasks = buildTasks(
    loadTasksConfig({
      GRPC_PORT: "0",
      TASKMESH_DATA_DIR: dir.path,
      JWKS_URL: jwksUrl,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
      ...nats,
    }),
    { logger },
  );
  const t = await tasks.listen();
  return {
    users,
    tasks,
    jwksUrl,
    dataDir: dir.path,
    env: {
      GRPC_PORT: "0",
      USERS_ADDR: `127.0.0.1:${u.grpcPort}`,
      TASKS_ADDR: `127.0.0.1:${t.grpcPort}`,
      JWKS_URL: jwksUrl,
      SHUTDOWN_GRACE_MS: "2000",
      LOG_LEVEL: "silent",
      // These suites sign up many users from one address; rate limits have their own tests.
      RATE_LIMIT_RPS: "0",
      LOGIN_RATE_LIMIT_PER_MINUTE: "0",
    },
    async stop() {
      await tasks.shutdown();
      await users.shutdown();
      dir.remove();
    },
  };
}

/**
 * A real grpc-js backend (the platform's GrpcServer, user tokens verified against the users JWKS)
 * serving `impl` — a stand-in for a service of a later issue, e.g. a slow AnalyticsService.
 */
export async function startBackend<S extends DescService>(
  service: S,
  impl: ServiceImpl<S>,
  jwksUrl: string,
): Promise<{ address: string; stop(): Promise<void> }> {
  const server = new GrpcServer({
    name: `fake-${service.name}`,
    logger,
    userTokens: createUserTokenVerifier(createRemoteJWKSet(new URL(jwksUrl))),
    services: [register(service, impl, { kind: "user" })],
  });
  const port = await server.listen(0);
  return { address: `127.0.0.1:${port}`, stop: () => server.shutdown(500) };
}

export const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

export async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(e)}`);
  return e;
}

/** Registers a fresh user through `transport` (the gateway) and logs in; returns the id and token. */
export async function newUser(transport: Transport) {
  const client = createClient(UserService, transport);
  const email = `u-${crypto.randomUUID()}@example.com`;
  const registered = await client.register({ email, password: PASSWORD });
  const login = await client.login({ email, password: PASSWORD });
  return { id: registered.user?.id ?? "", email, token: login.accessToken };
}

/** Polls `fn` every 20 ms until it returns something truthy; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves after `ms`, or early when `signal` aborts (a handler that hangs until its caller gives up). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
