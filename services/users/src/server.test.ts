import { Code, ConnectError } from "@connectrpc/connect";
import { NotificationChannel, UserInternalService, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  type GrpcClient,
  JWKS_PATH,
  ServiceTokens,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
} from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { base64url, createRemoteJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UsersConfig } from "./config.js";
import { build, type UsersApp } from "./server.js";
import { UsersStore } from "./users-store.js";

const logger = createLogger("users-test", { level: "silent" });
const SECRET = "test-secret-that-is-at-least-32-characters";

function configFor(dataDir: string): UsersConfig {
  return {
    grpcPort: 0,
    jwksPort: 0,
    host: "127.0.0.1",
    dataDir,
    dbPath: `${dataDir}/users.db`,
    keyPath: `${dataDir}/users-signing-key.json`,
    tokenTtlSeconds: 3600,
    serviceSecret: SECRET,
    // Nothing listens on port 1: the link retries in the background and events wait in the
    // outbox (user-events.test.ts runs against a real nats-server).
    natsServers: ["nats://127.0.0.1:1"],
    // Account deletion is tested in account-deletion.test.ts against real tasks.
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

interface Running {
  app: UsersApp;
  users: GrpcClient<typeof UserService>;
  grpcPort: number;
  httpPort: number;
  stop(): Promise<void>;
}

async function start(dataDir: string, now?: () => number): Promise<Running> {
  const app = build(configFor(dataDir), { logger, ...(now ? { now } : {}) });
  const { grpcPort, httpPort } = await app.listen();
  const users = createGrpcClient(UserService, { address: `127.0.0.1:${grpcPort}` });
  return {
    app,
    users,
    grpcPort,
    httpPort,
    async stop() {
      users.close();
      await app.shutdown();
    },
  };
}

function bearer(token: string) {
  return { headers: { authorization: `Bearer ${token}` } };
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
const uniqueEmail = () => `user${++n}-${Date.now()}@example.com`;

describe("users service", () => {
  const dir = tempDir("users-server-");
  let s: Running;
  beforeAll(async () => {
    s = await start(dir.path);
  });
  afterAll(async () => {
    await s.stop();
    dir.remove();
  });

  async function registerAndLogin(email = uniqueEmail(), password = "a good password") {
    const reg = await s.users.register({ email, password });
    const login = await s.users.login({ email, password });
    return { userId: reg.user?.id ?? "", token: login.accessToken, login };
  }

  it("registers, logs in, reads me and replaces preferences", async () => {
    const reg = await s.users.register({ email: "Grace.Hopper@Example.com", password: "COBOL-forever-1959" });
    expect(reg.user?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(reg.user?.email).toBe("grace.hopper@example.com");
    expect(reg.user?.preferences?.timeZone).toBe("");

    const login = await s.users.login({ email: "GRACE.HOPPER@example.com", password: "COBOL-forever-1959" });
    expect(login.tokenType).toBe("Bearer");
    expect(login.user?.id).toBe(reg.user?.id);
    const expiresIn = Number(login.expireTime?.seconds) - Date.now() / 1000;
    expect(expiresIn).toBeGreaterThan(3500);
    expect(expiresIn).toBeLessThanOrEqual(3600);

    const me = await s.users.getMe({}, bearer(login.accessToken));
    expect(me.user?.id).toBe(reg.user?.id);
    expect(me.user?.email).toBe("grace.hopper@example.com");

    const updated = await s.users.updatePreferences(
      {
        preferences: {
          timeZone: "europe/paris",
          channels: [NotificationChannel.IN_APP, NotificationChannel.WEBHOOK],
          quietHours: { startMinute: 22 * 60, endMinute: 7 * 60 },
          webhookUrl: "https://hooks.example.com/taskmesh",
        },
      },
      bearer(login.accessToken),
    );
    expect(updated.preferences?.timeZone).toBe("Europe/Paris");
    const after = await s.users.getMe({}, bearer(login.accessToken));
    expect(after.user?.preferences).toMatchObject({
      timeZone: "Europe/Paris",
      channels: [NotificationChannel.IN_APP, NotificationChannel.WEBHOOK],
      quietHours: { startMinute: 1320, endMinute: 420 },
      webhookUrl: "https://hooks.example.com/taskmesh",
    });
  });

  it("issues an EdDSA JWT with kid, issuer, audience, subject, iat, nbf, exp and jti", async () => {
    const { userId, token } = await registerAndLogin();
    const header = decodeProtectedHeader(token);
    expect(header).toMatchObject({ alg: "EdDSA", typ: "JWT", kid: s.app.keys.current.kid });
    const payload = JSON.parse(new TextDecoder().decode(base64url.decode(token.split(".")[1] as string)));
    expect(payload).toMatchObject({ sub: userId, iss: USER_TOKEN_ISSUER, aud: USER_TOKEN_AUDIENCE });
    expect(payload.nbf).toBe(payload.iat);
    expect(payload.exp - payload.iat).toBe(3600);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("refuses a second registration of an email, also in another case, and keeps the first password", async () => {
    const email = uniqueEmail();
    await s.users.register({ email, password: "first password" });
    const dup = await failure(s.users.register({ email, password: "second password" }));
    expect(dup.code).toBe(Code.AlreadyExists);
    const dupCase = await failure(s.users.register({ email: email.toUpperCase(), password: "third password" }));
    expect(dupCase.code).toBe(Code.AlreadyExists);
    await s.users.login({ email, password: "first password" });
    expect((await failure(s.users.login({ email, password: "second password" }))).code).toBe(Code.Unauthenticated);
  });

  it("refuses bad registrations naming the field, and stores nothing", async () => {
    const cases: [string, string, string][] = [
      ["not-an-email", "long enough password", "email"],
      ["", "long enough password", "email"],
      [`${"a".repeat(250)}@example.com`, "long enough password", "email"],
      [uniqueEmail(), "short", "password"],
      [uniqueEmail(), "p".repeat(129), "password"],
    ];
    const store = UsersStore.open(configFor(dir.path).dbPath);
    try {
      for (const [email, password, field] of cases) {
        const e = await failure(s.users.register({ email, password }));
        expect(e.code, `${field}: ${e.rawMessage}`).toBe(Code.InvalidArgument);
        expect(e.rawMessage).toMatch(new RegExp(`\\b${field}\\b`));
        expect(store.findByEmail(email)).toBeUndefined();
      }
    } finally {
      store.close();
    }
  });

  it("refuses an unknown time zone and invalid preferences naming the field, keeping the old ones", async () => {
    const { token } = await registerAndLogin();
    await s.users.updatePreferences({ preferences: { timeZone: "America/Chicago" } }, bearer(token));
    const bad: [object, string][] = [
      [{ timeZone: "Mars/Olympus_Mons" }, "preferences.time_zone"],
      [{ timeZone: "+02:00" }, "preferences.time_zone"],
      [{ timeZone: "x".repeat(65) }, "preferences.time_zone"],
      [{ channels: [NotificationChannel.WEBHOOK] }, "preferences.webhook_url"],
      [{ webhookUrl: "ftp://example.com/hook" }, "preferences.webhook_url"],
      [{ webhookUrl: `https://example.com/${"x".repeat(2048)}` }, "preferences.webhook_url"],
      [{ channels: [NotificationChannel.UNSPECIFIED] }, "preferences.channels"],
      [{ channels: [NotificationChannel.EMAIL, NotificationChannel.EMAIL] }, "preferences.channels"],
      [{ channels: [99] }, "preferences.channels"],
      [{ quietHours: { startMinute: 1440, endMinute: 0 } }, "preferences.quiet_hours.start_minute"],
    ];
    for (const [preferences, field] of bad) {
      const e = await failure(s.users.updatePreferences({ preferences }, bearer(token)));
      expect(e.code, JSON.stringify(preferences)).toBe(Code.InvalidArgument);
      expect(e.rawMessage, JSON.stringify(preferences)).toContain(field);
    }
    const missing = await failure(s.users.updatePreferences({}, bearer(token)));
    expect(missing.code).toBe(Code.InvalidArgument);
    expect(missing.rawMessage).toContain("preferences");
    const me = await s.users.getMe({}, bearer(token));
    expect(me.user?.preferences?.timeZone).toBe("America/Chicago");
  });

  it.each([
    ["IPv4 loopback", "http://127.0.0.1:8080/hook"],
    ["loopback by name", "http://localhost/hook"],
    ["loopback written as a number", "http://2130706433/hook"],
    ["loopback in hex", "http://0x7f.1/hook"],
    ["the cloud metadata address (link-local)", "http://169.254.169.254/latest/meta-data/"],
    ["a 10/8 private address", "https://10.0.0.7/hook"],
    ["a 172.16/12 private address", "https://172.20.1.1/hook"],
    ["a 192.168/16 private address", "https://192.168.1.1/hook"],
    ["a CGNAT address", "http://100.64.0.1/hook"],
    ["the unspecified address", "http://0.0.0.0:9000/hook"],
    ["a multicast address", "http://224.0.0.1/hook"],
    ["the broadcast address", "http://255.255.255.255/hook"],
    ["IPv6 loopback", "http://[::1]:8080/hook"],
    ["IPv6 unspecified", "http://[::]/hook"],
    ["IPv4-mapped loopback", "http://[::ffff:127.0.0.1]/hook"],
    ["IPv4-mapped metadata address", "http://[::ffff:169.254.169.254]/hook"],
    ["an IPv6 unique-local address", "http://[fd00::1]/hook"],
    ["an IPv6 link-local address", "http://[fe80::1]/hook"],
    ["an IPv6 multicast address", "http://[ff02::1]/hook"],
    ["NAT64 of a private address", "http://[64:ff9b::a00:1]/hook"],
    ["6to4 of loopback", "http://[2002:7f00:1::]/hook"],
  ])("refuses a webhook_url at %s, naming the field", async (_, webhookUrl) => {
    const { token } = await registerAndLogin();
    const e = await failure(s.users.updatePreferences({ preferences: { webhookUrl } }, bearer(token)));
    expect(e.code).toBe(Code.InvalidArgument);
    // (The contract's isUri() already refuses the bracketed IPv4-mapped forms; the rest reach the address check.)
    expect(e.rawMessage).toMatch(/preferences\.webhook_url(: .* address, which may not be reached|_format)/);
    const me = await s.users.getMe({}, bearer(token));
    expect(me.user?.preferences?.webhookUrl).toBe("");
  });

  it("accepts a webhook_url at a public address", async () => {
    const { token } = await registerAndLogin();
    for (const webhookUrl of ["https://93.184.216.34/hook", "https://[2606:2800:220:1:248:1893:25c8:1946]/hook"]) {
      const res = await s.users.updatePreferences({ preferences: { webhookUrl } }, bearer(token));
      expect(res.preferences?.webhookUrl).toBe(webhookUrl);
    }
  });

  it.each([
    ["a common password with digits", "password1234", /commonly used password/],
    ["a repeated character", "aaaaaaaaaaaa", /Repeated characters/],
    ["a keyboard walk", "qwertyuiop123", /.+/],
    ["the account's own email", "{email}", /.+/],
  ])("refuses %s as a password, saying why, and creates no account", async (_, password, why) => {
    const email = uniqueEmail();
    const e = await failure(s.users.register({ email, password: password.replace("{email}", email) }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(
      /^invalid request: password: too easy to guess \(strength [0-2] of 4, at least 3 needed\): /,
    );
    expect(e.rawMessage).toMatch(why);
    const login = await failure(s.users.login({ email, password: password.replace("{email}", email) }));
    expect(login.code).toBe(Code.Unauthenticated);
  });

  it("answers a wrong password and an unknown email alike: UNAUTHENTICATED, same message", async () => {
    const email = uniqueEmail();
    await s.users.register({ email, password: "the right password" });
    const wrong = await failure(s.users.login({ email, password: "the wrong password" }));
    const unknown = await failure(s.users.login({ email: uniqueEmail(), password: "the right password" }));
    expect(wrong.code).toBe(Code.Unauthenticated);
    expect(unknown.code).toBe(Code.Unauthenticated);
    expect(unknown.rawMessage).toBe(wrong.rawMessage);
  });

  describe("GetMe refuses a request without a valid token", () => {
    let token: string;
    beforeAll(async () => {
      ({ token } = await registerAndLogin());
    });

    it("no token", async () => {
      expect((await failure(s.users.getMe({}))).code).toBe(Code.Unauthenticated);
    });

    it("a token signed by another key, under an unknown kid", async () => {
      const { privateKey } = await generateKeyPair("EdDSA");
      const forged = await new SignJWT({})
        .setProtectedHeader({ alg: "EdDSA", kid: "attacker-key" })
        .setSubject(crypto.randomUUID())
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(privateKey);
      expect((await failure(s.users.getMe({}, bearer(forged)))).code).toBe(Code.Unauthenticated);
    });

    it("a token signed by another key with the same kid", async () => {
      const { privateKey } = await generateKeyPair("EdDSA");
      const forged = await new SignJWT({})
        .setProtectedHeader({ alg: "EdDSA", kid: s.app.keys.current.kid })
        .setSubject(crypto.randomUUID())
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(privateKey);
      const e = await failure(s.users.getMe({}, bearer(forged)));
      expect(e.code).toBe(Code.Unauthenticated);
      expect(e.rawMessage).toContain("signature");
    });

    it("an expired token", async () => {
      const past = await start(dir.path, () => Date.now() - 2 * 3600_000);
      try {
        const email = uniqueEmail();
        await past.users.register({ email, password: "a good password" });
        const { accessToken } = await past.users.login({ email, password: "a good password" });
        const e = await failure(s.users.getMe({}, bearer(accessToken)));
        expect(e.code).toBe(Code.Unauthenticated);
        expect(e.rawMessage).toContain("expired");
      } finally {
        await past.stop();
      }
    });

    it('alg "none"', async () => {
      const [, payload] = token.split(".");
      const header = base64url.encode(JSON.stringify({ alg: "none", typ: "JWT" }));
      const e = await failure(s.users.getMe({}, bearer(`${header}.${payload}.`)));
      expect(e.code).toBe(Code.Unauthenticated);
    });

    it("a tampered payload (another user's id under the original signature)", async () => {
      const [header, payload, signature] = token.split(".");
      const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload as string)));
      claims.sub = crypto.randomUUID();
      const tampered = `${header}.${base64url.encode(JSON.stringify(claims))}.${signature}`;
      const e = await failure(s.users.getMe({}, bearer(tampered)));
      expect(e.code).toBe(Code.Unauthenticated);
      expect(e.rawMessage).toContain("signature");
    });

    it("a malformed authorization header", async () => {
      const e = await failure(s.users.getMe({}, { headers: { authorization: `Token ${token}` } }));
      expect(e.code).toBe(Code.Unauthenticated);
      // And the genuine token works, so the refusals above are about the token.
      expect((await s.users.getMe({}, bearer(token))).user?.id).toBeTruthy();
    });
  });

  it("serves a JWKS over HTTP that verifies a login token (jose createRemoteJWKSet)", async () => {
    const { userId, token } = await registerAndLogin();
    const url = new URL(`http://127.0.0.1:${s.httpPort}${JWKS_PATH}`);
    const { payload } = await jwtVerify(token, createRemoteJWKSet(url), {
      algorithms: ["EdDSA"],
      issuer: USER_TOKEN_ISSUER,
      audience: USER_TOKEN_AUDIENCE,
    });
    expect(payload.sub).toBe(userId);

    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toContain("max-age=300");
    const body = (await res.json()) as { keys: Record<string, unknown>[] };
    expect(body.keys.every((k) => k.d === undefined)).toBe(true);
    const etag = res.headers.get("etag") ?? "";
    expect((await fetch(url, { headers: { "if-none-match": etag } })).status).toBe(304);

    expect((await fetch(`http://127.0.0.1:${s.httpPort}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${s.httpPort}/.well-known/other.json`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${s.httpPort}/`)).status).toBe(404);
    expect((await fetch(url, { method: "POST" })).status).toBe(405);
  });

  it("keeps verifying old tokens after a key rotation, and publishes the new key", async () => {
    const { userId, token: before } = await registerAndLogin();
    const oldKid = s.app.keys.current.kid;
    const newKid = await s.app.keys.rotate();
    const email = uniqueEmail();
    await s.users.register({ email, password: "a good password" });
    const after = (await s.users.login({ email, password: "a good password" })).accessToken;
    expect(decodeProtectedHeader(after).kid).toBe(newKid);
    expect((await s.users.getMe({}, bearer(before))).user?.id).toBe(userId);
    expect((await s.users.getMe({}, bearer(after))).user?.email).toBe(email);
    const body = (await (await fetch(`http://127.0.0.1:${s.httpPort}${JWKS_PATH}`)).json()) as {
      keys: { kid: string }[];
    };
    expect(body.keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
  });

  describe("UserInternalService.GetUserPreferences", () => {
    let internal: GrpcClient<typeof UserInternalService>;
    beforeAll(() => {
      internal = createGrpcClient(UserInternalService, { address: `127.0.0.1:${s.grpcPort}` });
    });
    afterAll(() => internal.close());

    it("refuses a caller without a service token, and one with a user token", async () => {
      const { userId, token } = await registerAndLogin();
      expect((await failure(internal.getUserPreferences({ userId }))).code).toBe(Code.Unauthenticated);
      expect((await failure(internal.getUserPreferences({ userId }, bearer(token)))).code).toBe(Code.Unauthenticated);
      const wrongSecret = await new ServiceTokens("another-secret-of-at-least-32-characters!", "tasks").token();
      expect((await failure(internal.getUserPreferences({ userId }, bearer(wrongSecret)))).code).toBe(
        Code.Unauthenticated,
      );
    });

    it("returns a user's email and preferences to a service, NOT_FOUND for an unknown user", async () => {
      const email = uniqueEmail();
      const { userId, token } = await registerAndLogin(email);
      await s.users.updatePreferences(
        { preferences: { timeZone: "Asia/Tokyo", channels: [NotificationChannel.EMAIL] } },
        bearer(token),
      );
      const service = await new ServiceTokens(SECRET, "notifications").token();
      const res = await internal.getUserPreferences({ userId }, bearer(service));
      expect(res.email).toBe(email);
      expect(res.preferences).toMatchObject({ timeZone: "Asia/Tokyo", channels: [NotificationChannel.EMAIL] });
      const nf = await failure(internal.getUserPreferences({ userId: crypto.randomUUID() }, bearer(service)));
      expect(nf.code).toBe(Code.NotFound);
      const bad = await failure(internal.getUserPreferences({ userId: "not-a-uuid" }, bearer(service)));
      expect(bad.code).toBe(Code.InvalidArgument);
      expect(bad.rawMessage).toContain("user_id");
    });
  });

  it("keeps an acknowledged registration readable from a fresh connection while the server still runs", async () => {
    const email = uniqueEmail();
    const { user } = await s.users.register({ email, password: "a good password" });
    // Opened as a restarted process would open it; the server has neither closed nor checkpointed.
    const reopened = UsersStore.open(configFor(dir.path).dbPath);
    try {
      expect(reopened.findByEmail(email)?.id).toBe(user?.id);
    } finally {
      reopened.close();
    }
  });
});

describe("users service restart", () => {
  it("keeps its signing key and accounts across a restart on the same data directory", async () => {
    const dir = tempDir("users-restart-");
    try {
      const first = await start(dir.path);
      const email = uniqueEmail();
      const { user } = await first.users.register({ email, password: "a good password" });
      const { accessToken } = await first.users.login({ email, password: "a good password" });
      const kid = first.app.keys.current.kid;
      await first.stop();

      const second = await start(dir.path);
      try {
        expect(second.app.keys.current.kid).toBe(kid);
        expect((await second.users.getMe({}, bearer(accessToken))).user?.id).toBe(user?.id);
        await second.users.login({ email, password: "a good password" });
      } finally {
        await second.stop();
      }
    } finally {
      dir.remove();
    }
  });
});
