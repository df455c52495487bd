import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createGrpcClient, createLogger, type GrpcClient, openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import Database from "better-sqlite3";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UsersConfig } from "./config.js";
import { build, type UsersApp } from "./server.js";
import { hashRefreshToken, SessionStore } from "./session-store.js";
import { MIGRATIONS, UsersStore } from "./users-store.js";

const logger = createLogger("sessions-test", { level: "silent" });
const HOUR = 3_600_000;
const PASSWORD = "a sturdy passphrase 42";

/**
 * The service's clock, moved forward by the tests (expiry) without waiting. It starts 8 h in the
 * past and tokens live a day, so access tokens it signs stay valid by the verifier's real clock.
 */
const clock = { t: Math.floor(Date.now() / 1000) * 1000 - 8 * HOUR };

let dir: { path: string; remove: () => void };
let app: UsersApp;
let users: GrpcClient<typeof UserService>;

function config(dataDir: string): UsersConfig {
  return {
    grpcPort: 0,
    jwksPort: 0,
    host: "127.0.0.1",
    dataDir,
    dbPath: `${dataDir}/users.db`,
    keyPath: `${dataDir}/users-signing-key.json`,
    tokenTtlSeconds: 86_400,
    // Idle 1 h, at most 3 h from login: the expiry tests move the clock past these.
    sessions: { idleMs: HOUR, maxAgeMs: 3 * HOUR },
    serviceSecret: "test-secret-that-is-at-least-32-characters",
    natsServers: ["nats://127.0.0.1:1"],
    tasksAddr: "127.0.0.1:1",
    notificationsAddr: "127.0.0.1:1",
    deletionRetryBudgetMs: 10_000,
    deletionCallTimeoutMs: 1000,
    reconcileIntervalMs: 10_000,
    inboxRetentionMs: 7 * 86_400_000,
    mesh: "none",
    logLevel: "silent",
  };
}

beforeAll(async () => {
  dir = tempDir("users-sessions-");
  app = build(config(dir.path), { logger, now: () => clock.t, scrypt: { N: 2 ** 10, r: 8, p: 1 } });
  const { grpcPort } = await app.listen();
  users = createGrpcClient(UserService, { address: `127.0.0.1:${grpcPort}` });
});

afterAll(async () => {
  users?.close();
  await app?.shutdown();
  dir?.remove();
});

function bearer(token: string, agent?: string) {
  return { headers: { authorization: `Bearer ${token}`, ...(agent ? { "x-taskmesh-client-agent": agent } : {}) } };
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "the call should have failed").toBeInstanceOf(ConnectError);
  return e as ConnectError;
}

let n = 0;
async function newUser() {
  const email = `session-${++n}-${Date.now()}@example.com`;
  await users.register({ email, password: PASSWORD });
  return email;
}

async function login(email: string, agent = "test-agent/1.0", ip = "203.0.113.7") {
  return users.login(
    { email, password: PASSWORD },
    { headers: { "x-taskmesh-client-agent": agent, "x-taskmesh-client-ip": ip } },
  );
}

/** The outbox of the service's database, read by a second connection (the relay cannot reach NATS here). */
function outboxTypes(): string[] {
  const db = new Database(`${dir.path}/users.db`, { readonly: true });
  try {
    return (db.prepare("SELECT subject FROM outbox ORDER BY seq").pluck().all() as string[]).map((s) =>
      s.replace(/^taskmesh\./, ""),
    );
  } finally {
    db.close();
  }
}

describe("sessions (real gRPC, real SQLite)", () => {
  it("Login returns a random refresh token, stored only as its hash, and an access token naming the session", async () => {
    const email = await newUser();
    const res = await login(email);
    expect(res.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 random bytes, base64url
    expect(res.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(decodeJwt(res.accessToken).sid).toBe(res.sessionId);
    // The email claim: tasks matches project invitations by it.
    expect(decodeJwt(res.accessToken).email).toBe(email);
    expect(res.refreshExpireTime?.seconds).toBe(BigInt((clock.t + HOUR) / 1000));
    const db = new Database(`${dir.path}/users.db`, { readonly: true });
    try {
      const stored = db
        .prepare("SELECT token_hash FROM refresh_tokens WHERE session_id = ?")
        .pluck()
        .all(res.sessionId);
      expect(stored).toEqual([hashRefreshToken(res.refreshToken)]);
      expect(JSON.stringify(db.prepare("SELECT * FROM refresh_tokens").all())).not.toContain(res.refreshToken);
    } finally {
      db.close();
    }
    expect(outboxTypes()).toContain("user.logged_in");
  });

  it("RefreshSession rotates: a new access token and refresh token for the same session, the old one spent", async () => {
    const email = await newUser();
    const first = await login(email);
    clock.t += 60_000;
    const second = await users.refreshSession({ refreshToken: first.refreshToken });
    expect(second.sessionId).toBe(first.sessionId);
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(decodeJwt(second.accessToken).sid).toBe(first.sessionId);
    expect(decodeJwt(second.accessToken).email).toBe(email);
    // The idle expiry moved with the refresh.
    expect(second.refreshExpireTime?.seconds).toBe(BigInt((clock.t + HOUR) / 1000));
    expect((await users.getMe({}, bearer(second.accessToken))).user?.email).toBe(email);
    const third = await users.refreshSession({ refreshToken: second.refreshToken });
    expect(third.sessionId).toBe(first.sessionId);
  });

  it("a spent refresh token presented again revokes the whole session family", async () => {
    const email = await newUser();
    const first = await login(email);
    const rotated = await users.refreshSession({ refreshToken: first.refreshToken });

    const reuse = await failure(users.refreshSession({ refreshToken: first.refreshToken }));
    expect(reuse.code).toBe(Code.Unauthenticated);
    expect(reuse.rawMessage).toContain("already used: its session has been revoked");
    // The newest token of the family no longer works either, nor does its access token here.
    const after = await failure(users.refreshSession({ refreshToken: rotated.refreshToken }));
    expect(after.code).toBe(Code.Unauthenticated);
    expect(after.rawMessage).toContain("signed out or revoked");
    expect((await failure(users.getMe({}, bearer(rotated.accessToken)))).code).toBe(Code.Unauthenticated);
    expect(outboxTypes()).toContain("user.refresh_reused");
  });

  it("refuses an unknown refresh token and an empty one with clear errors", async () => {
    const unknown = await failure(users.refreshSession({ refreshToken: "x".repeat(43) }));
    expect(unknown.code).toBe(Code.Unauthenticated);
    expect(unknown.rawMessage).toContain("refresh token is not valid");
    const empty = await failure(users.refreshSession({ refreshToken: "" }));
    expect(empty.code).toBe(Code.InvalidArgument);
    expect(empty.rawMessage).toContain("refresh_token");
  });

  it("a session expires after the idle time, and after its maximum age however often refreshed", async () => {
    const email = await newUser();
    const idle = await login(email);
    clock.t += HOUR + 1;
    const expired = await failure(users.refreshSession({ refreshToken: idle.refreshToken }));
    expect(expired.code).toBe(Code.Unauthenticated);
    expect(expired.rawMessage).toContain("session has expired");

    const login0 = clock.t;
    let s: { refreshToken: string; refreshExpireTime?: { seconds: bigint } } = await login(email);
    for (let i = 0; i < 3; i++) {
      clock.t += 50 * 60_000; // within the idle hour each time
      s = await users.refreshSession({ refreshToken: s.refreshToken });
    }
    // 2 h 30 min after the login: the idle extension is capped at login + 3 h.
    expect(Number(s.refreshExpireTime?.seconds)).toBe(Math.floor((login0 + 3 * HOUR) / 1000));
    clock.t += 50 * 60_000; // 3 h 20 min after the login: past the maximum age
    const old = await failure(users.refreshSession({ refreshToken: s.refreshToken }));
    expect(old.rawMessage).toContain("session has expired");
  });

  it("Logout revokes the current session: its refresh token and (here) its access token stop working; a repeat is fine", async () => {
    const email = await newUser();
    const s = await login(email);
    await users.logout({}, bearer(s.accessToken));
    await users.logout({}, bearer(s.accessToken));
    const refused = await failure(users.refreshSession({ refreshToken: s.refreshToken }));
    expect(refused.rawMessage).toContain("signed out or revoked");
    expect((await failure(users.getMe({}, bearer(s.accessToken)))).code).toBe(Code.Unauthenticated);
    expect(outboxTypes().filter((t) => t === "user.logged_out").length).toBeGreaterThanOrEqual(1);
  });

  it("ListSessions lists the caller's live sessions with device and address, marking the current one", async () => {
    const email = await newUser();
    const phone = await login(email, "Phone/1.0", "198.51.100.1");
    clock.t += 1000;
    const laptop = await login(email, "Laptop/2.0", "198.51.100.2");
    const gone = await login(email, "Old/0.1");
    await users.logout({}, bearer(gone.accessToken));

    const { sessions } = await users.listSessions({}, bearer(laptop.accessToken));
    expect(sessions.map((s) => [s.id, s.userAgent, s.ipAddress, s.current])).toEqual([
      [laptop.sessionId, "Laptop/2.0", "198.51.100.2", true],
      [phone.sessionId, "Phone/1.0", "198.51.100.1", false],
    ]);
  });

  it("RevokeSession ends another of the caller's sessions; another user's session id is NOT_FOUND", async () => {
    const email = await newUser();
    const a = await login(email);
    const b = await login(email);
    await users.revokeSession({ sessionId: b.sessionId }, bearer(a.accessToken));
    expect((await failure(users.refreshSession({ refreshToken: b.refreshToken }))).code).toBe(Code.Unauthenticated);
    expect((await users.listSessions({}, bearer(a.accessToken))).sessions.map((s) => s.id)).toEqual([a.sessionId]);
    expect(outboxTypes()).toContain("user.session_revoked");

    const stranger = await login(await newUser());
    const e = await failure(users.revokeSession({ sessionId: a.sessionId }, bearer(stranger.accessToken)));
    expect(e.code).toBe(Code.NotFound);
    // a's session is untouched.
    expect((await users.refreshSession({ refreshToken: a.refreshToken })).sessionId).toBe(a.sessionId);
    const bad = await failure(users.revokeSession({ sessionId: "not-a-uuid" }, bearer(stranger.accessToken)));
    expect(bad.code).toBe(Code.InvalidArgument);
  });

  it("a wrong password for an existing account is recorded as user.login_failed; an unknown email records nothing", async () => {
    const email = await newUser();
    const before = outboxTypes().length;
    await failure(users.login({ email, password: "not the password" }));
    await failure(users.login({ email: `nobody-${Date.now()}@example.com`, password: "whatever" }));
    expect(outboxTypes().slice(before)).toEqual(["user.login_failed"]);
  });
});

describe("users database migration to sessions (5)", () => {
  it("adds sessions to a database of the previous schema, keeping accounts; deleting an account drops its sessions", () => {
    const d = tempDir("users-migration-");
    try {
      const path = `${d.path}/users.db`;
      const old = openDatabase(
        path,
        MIGRATIONS.filter((m) => m.version <= 4),
      );
      old
        .prepare("INSERT INTO accounts (id, email, password_hash, created_at) VALUES ('u1', 'a@example.com', 'h', 1)")
        .run();
      old.prepare("INSERT INTO preferences (user_id, updated_at) VALUES ('u1', 1)").run();
      old.close();

      const store = new UsersStore(openDatabase(path, MIGRATIONS));
      try {
        expect(store.findById("u1")?.email).toBe("a@example.com");
        const sessions = new SessionStore(store.db, { idleMs: HOUR, maxAgeMs: 2 * HOUR });
        const { session } = sessions.create("u1", { ipAddress: "", userAgent: "" }, 10);
        expect(sessions.active("u1", 11).map((s) => s.id)).toEqual([session.id]);
        store.db.transaction(() => store.deleteAccountWithEvent("u1", new Date(20)))();
        expect(sessions.get(session.id)).toBeUndefined();
        expect(store.db.prepare("SELECT count(*) FROM refresh_tokens").pluck().get()).toBe(0);
      } finally {
        store.close();
      }
    } finally {
      d.remove();
    }
  });
});
