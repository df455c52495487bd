import { join } from "node:path";
import { TaskInternalService, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  createGrpcClient,
  createUserTokenVerifier,
  type GrpcClient,
  ServiceTokens,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
} from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import Database from "better-sqlite3";
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { loadTasksConfig } from "./config.js";
import { build, type TasksApp, type TasksDeps } from "./server.js";

/** A NATS URL where nothing listens. */
export const NO_NATS = "nats://127.0.0.1:1";

export const SERVICE_SECRET = "test-service-secret-of-at-least-32-chars";

/** An Ed25519 user-token issuer standing in for the users service (its JWKS path is tested there and e2e). */
export async function testIssuer() {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: "test-key", alg: "EdDSA", use: "sig" };
  return {
    jwks: { keys: [jwk] },
    verifier: createUserTokenVerifier(createLocalJWKSet({ keys: [jwk] })),
    /** A token for `userId` carrying `email` (default `<userId>@example.test`), as users issues them. */
    token: (userId: string, email = `${userId}@example.test`) =>
      new SignJWT({ email })
        .setProtectedHeader({ alg: "EdDSA", kid: "test-key" })
        .setSubject(userId)
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("10m")
        .sign(privateKey),
  };
}

export interface Harness {
  address: string;
  dbPath: string;
  app: TasksApp;
  /** A TaskService client acting as `userId` (a token for it, with `email`, is signed once). */
  as(userId: string, email?: string): Promise<GrpcClient<typeof TaskService>>;
  /** A valid user token for `userId`. */
  token(userId: string): Promise<string>;
  /** A TaskService client sending no token. */
  anonymous(): GrpcClient<typeof TaskService>;
  /** A TaskInternalService client with a valid service token, or with none. */
  internal(opts?: { token?: boolean }): GrpcClient<typeof TaskInternalService>;
  /** Rows in the tasks table (all users), read over a separate connection. */
  countRows(table?: "tasks" | "idempotency_keys"): number;
  /** Stops the server and closes clients; keeps the database unless `remove`. */
  stop(opts?: { remove?: boolean }): Promise<void>;
}

/** The tasks service built as main.ts builds it, on a temp SQLite file, listening on port 0. */
export async function startTasks(
  opts: { dir?: string; env?: Record<string, string>; deps?: Omit<TasksDeps, "userTokens"> } = {},
): Promise<Harness> {
  const dir = opts.dir ? { path: opts.dir, remove: () => {} } : tempDir("tasks-test-");
  const config = loadTasksConfig({
    GRPC_PORT: "0",
    TASKMESH_DATA_DIR: dir.path,
    TASKMESH_SERVICE_SECRET: SERVICE_SECRET,
    LOG_LEVEL: "silent",
    // Nothing listens on port 1: the NATS link retries in the background, events wait in the
    // outbox. Tests about events pass the URL of a real nats-server (task-events.test.ts).
    NATS_URL: NO_NATS,
    ...opts.env,
  });
  const issuer = await testIssuer();
  const app = build(config, { ...opts.deps, userTokens: issuer.verifier });
  const { grpcPort } = await app.listen();
  const address = `127.0.0.1:${grpcPort}`;
  const clients: { close(): void }[] = [];
  const track = <C extends { close(): void }>(c: C) => {
    clients.push(c);
    return c;
  };
  const serviceTokens = new ServiceTokens(SERVICE_SECRET, "recurrence");
  return {
    address,
    dbPath: config.dbPath,
    app,
    async as(userId, email) {
      const token = await issuer.token(userId, email);
      return track(createGrpcClient(TaskService, { address, metadata: () => ({ authorization: `Bearer ${token}` }) }));
    },
    token: (userId) => issuer.token(userId),
    anonymous: () => track(createGrpcClient(TaskService, { address })),
    internal: ({ token = true } = {}) =>
      track(
        createGrpcClient(TaskInternalService, {
          address,
          metadata: async (): Promise<Record<string, string>> =>
            token ? { authorization: `Bearer ${await serviceTokens.token()}` } : {},
        }),
      ),
    countRows(table = "tasks") {
      const db = new Database(config.dbPath, { readonly: true });
      try {
        return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
      } finally {
        db.close();
      }
    },
    async stop({ remove = true } = {}) {
      for (const c of clients) c.close();
      await app.shutdown();
      if (remove) dir.remove();
    },
  };
}

export const dbFile = (dir: string) => join(dir, "tasks.db");
