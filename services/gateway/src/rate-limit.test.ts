// The rate limiter in the real gateway, in front of the real users and tasks (in-process, temp
// SQLite, port 0). The buckets run on a clock the test moves, so "refills after the wait" needs
// no sleeping and nothing depends on how fast the machine is.
import { Code, type ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createUserTokenVerifier,
  remoteUserKeys,
  shutdownTelemetry,
  startTelemetry,
  type Telemetry,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
  type UserTokenVerifier,
} from "@taskmesh/platform";
import { generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadGatewayConfig } from "./config.js";
import { type Backends, bearer, errorOf, logger, PASSWORD, startBackends } from "./gateway.test-util.js";
import { RetryInfoSchema } from "./retry-info.js";
import { build, type GatewayApp } from "./server.js";

let backends: Backends;
let telemetry: Telemetry;
const gateways: GatewayApp[] = [];

beforeAll(async () => {
  // Metrics on (a free port) before the gateway exists, as main.ts does by importing telemetry first.
  telemetry = await startTelemetry({ serviceName: "gateway-rate-limit-test", metricsPort: 0 });
  backends = await startBackends("gateway-rate-limit-");
});
afterAll(async () => {
  for (const g of gateways) await g.shutdown();
  await backends?.stop();
  await shutdownTelemetry();
});

/** A gateway over the shared backends with these limits, on a clock the test moves. */
async function gateway(env: Record<string, string>, deps: { userTokens?: UserTokenVerifier } = {}) {
  const clock = { t: 0 };
  const app = build(
    loadGatewayConfig({ ...backends.env, RATE_LIMIT_RPS: "0", LOGIN_RATE_LIMIT_PER_MINUTE: "0", ...env }),
    { logger, now: () => clock.t, ...deps },
  );
  gateways.push(app);
  const baseUrl = `http://127.0.0.1:${(await app.listen()).grpcPort}`;
  return {
    baseUrl,
    clock,
    grpc: createGrpcTransport({ baseUrl }),
    connect: createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  };
}

/**
 * A user registered and logged in at the users backend itself, not through the gateway, so the
 * gateway's sign-in buckets see none of it.
 */
async function directUser() {
  const users = createClient(UserService, createGrpcTransport({ baseUrl: `http://${backends.env.USERS_ADDR}` }));
  const email = `rl-${crypto.randomUUID()}@example.com`;
  const registered = await users.register({ email, password: PASSWORD });
  const login = await users.login({ email, password: PASSWORD });
  return { id: registered.user?.id ?? "", email, token: login.accessToken };
}

const listTasks = (transport: Transport, token: string) =>
  createClient(TaskService, transport).listTasks({}, bearer(token));

/** Calls `fn` n times in a row; resolves the code names ("OK" for success). */
async function codes(n: number, fn: () => Promise<unknown>): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++)
    out.push(
      await fn().then(
        () => "OK",
        (e: ConnectError) => Code[e.code] ?? String(e),
      ),
    );
  return out;
}

const ok = (n: number) => Array.from({ length: n }, () => "OK");
const exhausted = (n: number) => Array.from({ length: n }, () => "ResourceExhausted");

function expectRetryAfter(err: ConnectError, seconds: number) {
  expect(err.code).toBe(Code.ResourceExhausted);
  expect(err.metadata.get("retry-after")).toBe(String(seconds));
  const [info] = err.findDetails(RetryInfoSchema) as Array<{ retryDelay?: { seconds: bigint; nanos: number } }>;
  expect(info?.retryDelay).toMatchObject({ seconds: BigInt(seconds), nanos: 0 });
}

async function scrape(name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${telemetry.metricsPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([0-9.eE+-]+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total += Number(m[3]);
  }
  return total;
}

describe("the gateway's rate limit per user", () => {
  it("verifies a caller's token once per call, although the limiter and the forwarding handler both need it", async () => {
    const real = createUserTokenVerifier(remoteUserKeys(backends.jwksUrl));
    const verified: string[] = [];
    const counting: UserTokenVerifier = {
      verify: (token) => {
        verified.push(token);
        return real.verify(token);
      },
    };
    const gw = await gateway({ RATE_LIMIT_RPS: "100", RATE_LIMIT_BURST: "100" }, { userTokens: counting });
    const a = await directUser();
    await listTasks(gw.grpc, a.token);
    await listTasks(gw.connect, a.token);
    expect(verified).toEqual([a.token, a.token]);
    // A bad token: verified once too, and refused.
    verified.length = 0;
    expect((await errorOf(listTasks(gw.grpc, `${a.token}x`))).code).toBe(Code.Unauthenticated);
    expect(verified).toHaveLength(1);
  });

  it("lets a user's burst through, then answers RESOURCE_EXHAUSTED with retry-after and RetryInfo, over gRPC and Connect", async () => {
    const gw = await gateway({ RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "5" });
    const a = await directUser();
    const before = await scrape("taskmesh_gateway_rate_limited_total", { limit: "user" });
    expect(await codes(5, () => listTasks(gw.grpc, a.token))).toEqual(ok(5));

    const overGrpc = await errorOf(listTasks(gw.grpc, a.token));
    expectRetryAfter(overGrpc, 1);
    expect(overGrpc.rawMessage).toMatch(/rate limit exceeded; retry after 1 s/);
    // Same bucket whatever the protocol: the user, not the connection.
    expectRetryAfter(await errorOf(listTasks(gw.connect, a.token)), 1);
    // As plain HTTP: 429 with a Retry-After header a browser or curl understands.
    const res = await fetch(`${gw.baseUrl}/taskmesh.tasks.v1.TaskService/ListTasks`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${a.token}` },
      body: "{}",
    });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(((await res.json()) as { code?: string }).code).toBe("resource_exhausted");

    expect(
      (await scrape("taskmesh_gateway_rate_limited_total", { limit: "user", rpc_method: "ListTasks" })) - before,
    ).toBe(3);
  });

  it("refills at RATE_LIMIT_RPS: after the wait the next call goes through", async () => {
    const gw = await gateway({ RATE_LIMIT_RPS: "2", RATE_LIMIT_BURST: "2" });
    const a = await directUser();
    expect(await codes(3, () => listTasks(gw.grpc, a.token))).toEqual([...ok(2), "ResourceExhausted"]);
    gw.clock.t += 500; // one token at 2/s
    expect(await codes(2, () => listTasks(gw.grpc, a.token))).toEqual(["OK", "ResourceExhausted"]);
    gw.clock.t += 60_000; // refilled to the burst, not beyond
    expect(await codes(3, () => listTasks(gw.grpc, a.token))).toEqual([...ok(2), "ResourceExhausted"]);
  });

  it("refuses before the backend: a refused CreateTask stores nothing", async () => {
    const gw = await gateway({ RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "3" });
    const a = await directUser();
    const tasks = createClient(TaskService, gw.grpc);
    const create = () => tasks.createTask({ task: { title: "one of many" } }, bearer(a.token));
    expect(await codes(5, create)).toEqual([...ok(3), ...exhausted(2)]);
    gw.clock.t += 1000;
    expect((await tasks.listTasks({}, bearer(a.token))).tasks).toHaveLength(3);
  });

  it("does not let one user's exhaustion affect another user", async () => {
    const gw = await gateway({ RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "4" });
    const [a, b] = [await directUser(), await directUser()];
    expect(await codes(6, () => listTasks(gw.grpc, a.token))).toEqual([...ok(4), ...exhausted(2)]);
    expect(await codes(4, () => listTasks(gw.grpc, b.token))).toEqual(ok(4));
    expect(await codes(1, () => listTasks(gw.grpc, a.token))).toEqual(exhausted(1));
  });

  it("limits calls with a bad token by address, so forged tokens cannot drain the named user's bucket", async () => {
    const gw = await gateway({ RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "3" });
    const a = await directUser();
    // Well-formed, naming user a, signed by a key that is not the users service's.
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "EdDSA" })
      .setSubject(a.id)
      .setIssuer(USER_TOKEN_ISSUER)
      .setAudience(USER_TOKEN_AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(privateKey);
    expect(await codes(5, () => listTasks(gw.grpc, forged))).toEqual([
      "Unauthenticated",
      "Unauthenticated",
      "Unauthenticated",
      ...exhausted(2),
    ]);
    expect(await codes(3, () => listTasks(gw.grpc, a.token))).toEqual(ok(3));
  });

  it("never limits health checks (probes) ", async () => {
    const gw = await gateway({ RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "1", LOGIN_RATE_LIMIT_PER_MINUTE: "1" });
    const health = createClient(Health, gw.grpc);
    const statuses = await Promise.all(Array.from({ length: 20 }, () => health.check({ service: "" })));
    expect(statuses.every((s) => s.status === HealthCheckResponse_ServingStatus.SERVING)).toBe(true);
  });
});

describe("the gateway's sign-in limits (brute force)", () => {
  it("cuts off Login and Register from one address sooner than normal calls, whatever x-forwarded-for says", async () => {
    const gw = await gateway({
      RATE_LIMIT_RPS: "1",
      RATE_LIMIT_BURST: "10",
      LOGIN_RATE_LIMIT_PER_MINUTE: "6",
      LOGIN_RATE_LIMIT_BURST: "3",
    });
    const victim = await directUser();
    const users = createClient(UserService, gw.grpc);
    let n = 0;
    // Guesses at several accounts (so the per-email bucket is not what stops them), each claiming
    // another client address: without trusted proxies the header is ignored.
    const guess = () =>
      users.login(
        { email: `guess-${n}@example.com`, password: "not-it" },
        { headers: { "x-forwarded-for": `203.0.113.${++n}` } },
      );
    expect(await codes(5, guess)).toEqual(["Unauthenticated", "Unauthenticated", "Unauthenticated", ...exhausted(2)]);
    const err = await errorOf(guess());
    // 6 per minute: the next attempt in 10 s.
    expectRetryAfter(err, 10);
    expect(err.rawMessage).toMatch(/too many sign-in or sign-up attempts from this address/);
    // Register shares the address's bucket (no new accounts from here either)...
    const reg = await errorOf(users.register({ email: `new-${crypto.randomUUID()}@example.com`, password: PASSWORD }));
    expect(reg.code).toBe(Code.ResourceExhausted);
    // ... while a signed-in user's normal calls from the same address still have their own, larger burst.
    expect(await codes(10, () => listTasks(gw.grpc, victim.token))).toEqual(ok(10));

    gw.clock.t += 10_000;
    const login = await users.login({ email: victim.email, password: PASSWORD });
    expect(login.accessToken).not.toBe("");
    expect(await codes(1, guess)).toEqual(exhausted(1));
  });

  // Replaces "limits Login per email across client addresses": that per-email bucket at the
  // address limit's level let any stranger lock an account's owner out (issue 12).
  it("does not let a stranger's failed logins from other addresses throttle the owner's login from theirs", async () => {
    const gw = await gateway({
      LOGIN_RATE_LIMIT_PER_MINUTE: "6",
      LOGIN_RATE_LIMIT_BURST: "3",
      TRUSTED_PROXY_HOPS: "1",
    });
    const victim = await directUser();
    const users = createClient(UserService, gw.grpc);
    const from = (address: string) => ({ headers: { "x-forwarded-for": address } });
    // One stranger: cut off by their address's limit after 3 guesses.
    const guess = () => users.login({ email: victim.email, password: "guess" }, from("198.51.100.7"));
    expect(await codes(5, guess)).toEqual(["Unauthenticated", "Unauthenticated", "Unauthenticated", ...exhausted(2)]);
    // A few more strangers, each from their own address, each until their address runs out.
    for (let i = 1; i <= 3; i++)
      await codes(4, () => users.login({ email: victim.email.toUpperCase(), password: "x" }, from(`203.0.113.${i}`)));
    // The owner, from their own address, signs in at once, every time.
    expect(await codes(3, () => users.login({ email: victim.email, password: PASSWORD }, from("192.0.2.1")))).toEqual(
      ok(3),
    );
  });

  it("backs off one (address, email) exponentially after repeated failures, and a success clears it", async () => {
    const gw = await gateway({
      LOGIN_RATE_LIMIT_PER_MINUTE: "600",
      LOGIN_RATE_LIMIT_BURST: "100",
      LOGIN_FREE_FAILURES: "2",
      TRUSTED_PROXY_HOPS: "1",
    });
    const victim = await directUser();
    const users = createClient(UserService, gw.grpc);
    const here = { headers: { "x-forwarded-for": "198.51.100.20" } };
    const guess = () => users.login({ email: victim.email, password: "guess" }, here);
    const before = await scrape("taskmesh_gateway_rate_limited_total", { limit: "login_backoff" });
    expect(await codes(3, guess)).toEqual(["Unauthenticated", "Unauthenticated", "ResourceExhausted"]);
    // Two free failures; the third waits 1 s ...
    const first = await errorOf(guess());
    expectRetryAfter(first, 1);
    expect(first.rawMessage).toMatch(/too many failed sign-ins for this email from this address/);
    gw.clock.t += 1000;
    expect(await codes(1, guess)).toEqual(["Unauthenticated"]);
    // ... the next 2 s, then 4 s: each miss doubles the wait.
    expectRetryAfter(await errorOf(guess()), 2);
    gw.clock.t += 2000;
    expect(await codes(1, guess)).toEqual(["Unauthenticated"]);
    expectRetryAfter(await errorOf(guess()), 4);
    // Another account from the same address is not slowed by it.
    const other = await directUser();
    await users.login({ email: other.email, password: PASSWORD }, here);
    // After the wait, the right password gets in and the pair starts afresh.
    gw.clock.t += 4000;
    await users.login({ email: victim.email, password: PASSWORD }, here);
    expect(await codes(3, guess)).toEqual(["Unauthenticated", "Unauthenticated", "ResourceExhausted"]);
    expect((await scrape("taskmesh_gateway_rate_limited_total", { limit: "login_backoff" })) - before).toBe(5);
  });

  it("caps Login per email across all addresses at a ceiling far above one address's limit", async () => {
    const gw = await gateway({
      LOGIN_RATE_LIMIT_PER_MINUTE: "6",
      LOGIN_RATE_LIMIT_BURST: "3",
      LOGIN_EMAIL_CEILING_FACTOR: "2",
      TRUSTED_PROXY_HOPS: "1",
    });
    const victim = await directUser();
    const users = createClient(UserService, gw.grpc);
    let n = 0;
    const guess = () =>
      users.login({ email: victim.email, password: "x" }, { headers: { "x-forwarded-for": `198.51.100.${++n}` } });
    // 2 x the burst of 3 from many addresses, then the ceiling.
    expect(await codes(7, guess)).toEqual([...Array.from({ length: 6 }, () => "Unauthenticated"), ...exhausted(1)]);
    const err = await errorOf(guess());
    expect(err.rawMessage).toMatch(/too many sign-in attempts for this email from all addresses together/);
  });
});
