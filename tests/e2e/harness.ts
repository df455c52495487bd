// Shared by the end-to-end tests: the system started the way `npm start` starts it (real
// processes, real nats-server, real SQLite files, free ports, a temporary data dir), and two
// clients of the gateway that only differ in protocol: gRPC over h2c and Connect JSON over
// HTTP/1.1 with plain fetch, as a browser or curl would send it.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type DescMethod, fromJson, type JsonObject, type JsonValue, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { USER_TOKEN_ALG, USER_TOKEN_AUDIENCE, USER_TOKEN_ISSUER } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { REPO_ROOT, type RunningSystem, type StartSystemOptions, startSystem } from "@taskmesh/runner";
import { generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import { expect } from "vitest";

export interface E2E {
  system: RunningSystem;
  dataDir: string;
  /** Stops every process and removes the data dir. */
  stop(): Promise<void>;
}

/**
 * Starts nats-server and every built service from their compiled dist, on free ports. `options`
 * go to the runner on top of those (e.g. `env: { SMTP_URL }`).
 */
/**
 * Every test client calls from 127.0.0.1, so the gateway's per-address limits on Register/Login
 * (and per-user limits) would couple unrelated scenarios. They are off here unless a suite sets
 * them; the limiter has its own tests (services/gateway/src/rate-limit.test.ts).
 */
const UNLIMITED: Record<string, string> = { RATE_LIMIT_RPS: "0", LOGIN_RATE_LIMIT_PER_MINUTE: "0" };

export async function startE2E(options: Omit<StartSystemOptions, "dataDir"> = {}): Promise<E2E> {
  const data = tempDir("taskmesh-e2e-");
  try {
    const system = await startSystem({
      dataDir: data.path,
      freePorts: true,
      logLevel: "warn",
      ...options,
      env: { ...UNLIMITED, ...options.env },
    });
    return {
      system,
      dataDir: data.path,
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

export type CallResult =
  | { ok: true; body: JsonObject }
  | { ok: false; code: Code; codeName: string; message: string; httpStatus?: number };

/** One way of calling the gateway: the request and the answer as proto3 JSON. */
export interface Api {
  readonly protocol: "grpc" | "connect-json";
  call(method: DescMethod, body: JsonObject, token?: string): Promise<CallResult>;
}

/** gRPC over HTTP/2 without TLS (h2c), with connect-node's gRPC transport. */
export function grpcApi(baseUrl: string): Api {
  const transport = createGrpcTransport({ baseUrl });
  return {
    protocol: "grpc",
    async call(method, body, token) {
      const client = createClient(method.parent, transport) as unknown as Record<
        string,
        (req: unknown, opts: { headers?: Record<string, string>; timeoutMs?: number }) => Promise<unknown>
      >;
      const fn = client[method.localName];
      if (!fn) throw new Error(`no client method ${method.localName}`);
      try {
        const res = await fn(fromJson(method.input, body), {
          headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
          timeoutMs: 10_000,
        });
        return { ok: true, body: toJson(method.output, res as never) as JsonObject };
      } catch (err) {
        const e = ConnectError.from(err);
        return { ok: false, code: e.code, codeName: Code[e.code], message: e.rawMessage };
      }
    },
  };
}

/** The Connect protocol's JSON flavour over HTTP/1.1: POST /<service>/<method>, JSON in and out. */
export function connectJsonApi(baseUrl: string): Api {
  return {
    protocol: "connect-json",
    async call(method, body, token) {
      const res = await fetch(`${baseUrl}/${method.parent.typeName}/${method.name}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "connect-protocol-version": "1",
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      const json = (text ? JSON.parse(text) : {}) as JsonObject;
      if (res.ok) return { ok: true, body: json };
      const code = codeFromString(String(json.code)) ?? Code.Unknown;
      return { ok: false, code, codeName: Code[code], message: String(json.message ?? ""), httpStatus: res.status };
    },
  };
}

/** The body of a successful call; fails the test with the error otherwise. */
export function ok(result: CallResult): JsonObject {
  if (!result.ok) throw new Error(`expected success, got ${result.codeName}: ${result.message}`);
  return result.body;
}

/** Asserts the call failed with `code` (and a message matching `message`, if given). */
export function fails(result: CallResult, code: Code, message?: RegExp): void {
  if (result.ok) throw new Error(`expected ${Code[code]}, got success: ${JSON.stringify(result.body)}`);
  expect(result.codeName).toBe(Code[code]);
  if (message) expect(result.message).toMatch(message);
}

export interface SignedUp {
  userId: string;
  email: string;
  password: string;
  token: string;
}

/** Registers a fresh user and logs in, through the gateway. */
export async function signUp(api: Api): Promise<SignedUp> {
  const email = `e2e-${randomUUID()}@example.com`;
  const password = "correct-horse-battery";
  const registered = ok(await api.call(UserService.method.register, { email, password }));
  const userId = (registered.user as JsonObject).id as string;
  const login = ok(await api.call(UserService.method.login, { email, password }));
  return { userId, email, password, token: login.accessToken as string };
}

/**
 * A user token signed with the users service's own current key (read from its key file in the
 * data dir) but with claims of our choosing, e.g. an expiry in the past.
 */
export async function tokenSignedByUsers(
  dataDir: string,
  userId: string,
  times: { iat: number; exp: number; nbf?: number },
): Promise<string> {
  const file = JSON.parse(readFileSync(join(dataDir, "users-signing-key.json"), "utf8")) as {
    keys: Array<{ kid: string; privateJwk: JWK; retiredAt?: string }>;
  };
  const current = file.keys.filter((k) => !k.retiredAt).at(-1);
  if (!current) throw new Error("users-signing-key.json has no current key");
  const key = await importJWK(current.privateJwk, USER_TOKEN_ALG);
  return await sign(key, current.kid, userId, times);
}

/** A well-formed user token for `userId` under the users service's `kid`, signed by a key that is not its. */
export async function tokenSignedByStranger(dataDir: string, userId: string): Promise<string> {
  const file = JSON.parse(readFileSync(join(dataDir, "users-signing-key.json"), "utf8")) as {
    keys: Array<{ kid: string }>;
  };
  const kid = file.keys.at(-1)?.kid ?? "unknown";
  const { privateKey } = await generateKeyPair(USER_TOKEN_ALG, { crv: "Ed25519" });
  const now = Math.floor(Date.now() / 1000);
  return await sign(privateKey, kid, userId, { iat: now, exp: now + 3600 });
}

async function sign(
  key: Parameters<SignJWT["sign"]>[0],
  kid: string,
  userId: string,
  { iat, exp, nbf = iat }: { iat: number; exp: number; nbf?: number },
): Promise<string> {
  return await new SignJWT({})
    .setProtectedHeader({ alg: USER_TOKEN_ALG, kid, typ: "JWT" })
    .setSubject(userId)
    .setIssuer(USER_TOKEN_ISSUER)
    .setAudience(USER_TOKEN_AUDIENCE)
    .setIssuedAt(iat)
    .setNotBefore(nbf)
    .setExpirationTime(exp)
    .setJti(randomUUID())
    .sign(key);
}

/** Runs `buf curl` (node_modules/.bin/buf, what `npx buf` runs) and resolves its stdout. */
export function bufCurl(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      join(REPO_ROOT, "node_modules/.bin/buf"),
      ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args],
      { cwd: REPO_ROOT, timeout: 30_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`buf curl ${args.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

export type { JsonObject, JsonValue };
