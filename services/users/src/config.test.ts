import { ConfigError } from "@taskmesh/platform";
import { describe, expect, it } from "vitest";
import { loadUsersConfig } from "./config.js";

const secret = "s".repeat(32);

describe("loadUsersConfig", () => {
  it("uses the documented defaults, deriving file paths from the data directory", () => {
    const c = loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, TASKMESH_DATA_DIR: "/var/lib/taskmesh" });
    expect(c).toMatchObject({
      grpcPort: 50051,
      jwksPort: 50061,
      host: "127.0.0.1",
      dbPath: "/var/lib/taskmesh/users.db",
      keyPath: "/var/lib/taskmesh/users-signing-key.json",
      tokenTtlSeconds: 900,
      mesh: "none",
      natsServers: ["nats://127.0.0.1:4222"],
    });
  });

  it("reads NATS_URL as one or several comma-separated servers and refuses anything else, naming it", () => {
    const c = loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, NATS_URL: "nats://a:4222, nats://b:4223" });
    expect(c.natsServers).toEqual(["nats://a:4222", "nats://b:4223"]);
    expect(() => loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, NATS_URL: "http://nats:4222" })).toThrow(
      /NATS_URL must be nats:\/\/host:port/,
    );
    expect(() => loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, NATS_URL: "localhost" })).toThrow(/NATS_URL/);
  });

  it("takes explicit paths and ports over the defaults", () => {
    const c = loadUsersConfig({
      TASKMESH_SERVICE_SECRET: secret,
      GRPC_PORT: "6001",
      JWKS_PORT: "6002",
      DB_PATH: "/tmp/u.db",
      KEY_PATH: "/tmp/k.json",
      TOKEN_TTL_SECONDS: "600",
    });
    expect(c).toMatchObject({ grpcPort: 6001, jwksPort: 6002, dbPath: "/tmp/u.db", keyPath: "/tmp/k.json" });
    expect(c.tokenTtlSeconds).toBe(600);
  });

  it("names every missing or malformed variable at once", () => {
    const err = (() => {
      try {
        loadUsersConfig({ GRPC_PORT: "70000", TOKEN_TTL_SECONDS: "5" });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toContain("TASKMESH_SERVICE_SECRET is required");
    expect(message).toContain("GRPC_PORT");
    expect(message).toContain("TOKEN_TTL_SECONDS");
  });

  it("refuses a service secret shorter than 32 characters", () => {
    expect(() => loadUsersConfig({ TASKMESH_SERVICE_SECRET: "short" })).toThrow(
      /TASKMESH_SERVICE_SECRET must be at least 32 characters/,
    );
  });
});

describe("loadUsersConfig sessions", () => {
  it("defaults to a 14-day idle and 30-day maximum session life, and takes both from the environment", () => {
    const d = loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret });
    expect(d.sessions).toEqual({ idleMs: 14 * 86_400_000, maxAgeMs: 30 * 86_400_000 });
    const c = loadUsersConfig({
      TASKMESH_SERVICE_SECRET: secret,
      SESSION_IDLE_SECONDS: "600",
      SESSION_MAX_AGE_SECONDS: "7200",
      TOKEN_TTL_SECONDS: "300",
    });
    expect(c.sessions).toEqual({ idleMs: 600_000, maxAgeMs: 7_200_000 });
  });

  it("refuses lifetimes out of range, or an idle life longer than the maximum age, naming the variable", () => {
    expect(() => loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, SESSION_IDLE_SECONDS: "10" })).toThrow(
      /SESSION_IDLE_SECONDS/,
    );
    expect(() => loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, SESSION_MAX_AGE_SECONDS: "999999999" })).toThrow(
      /SESSION_MAX_AGE_SECONDS/,
    );
    expect(() =>
      loadUsersConfig({
        TASKMESH_SERVICE_SECRET: secret,
        SESSION_IDLE_SECONDS: "86400",
        SESSION_MAX_AGE_SECONDS: "3600",
      }),
    ).toThrow(/SESSION_IDLE_SECONDS \(86400\) must not exceed SESSION_MAX_AGE_SECONDS/);
  });

  it("refuses an idle life no longer than the access token's, which no client could refresh in time", () => {
    // Idle 5 minutes, access tokens 15: the session would end before a client refreshes at the
    // access token's expiry, so every sign-in would last one access token.
    expect(() => loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, SESSION_IDLE_SECONDS: "300" })).toThrow(
      /SESSION_IDLE_SECONDS \(300\) must be longer than TOKEN_TTL_SECONDS \(900\)/,
    );
    expect(() =>
      loadUsersConfig({ TASKMESH_SERVICE_SECRET: secret, SESSION_IDLE_SECONDS: "900", TOKEN_TTL_SECONDS: "900" }),
    ).toThrow(/SESSION_IDLE_SECONDS \(900\) must be longer than TOKEN_TTL_SECONDS \(900\)/);
    const c = loadUsersConfig({
      TASKMESH_SERVICE_SECRET: secret,
      SESSION_IDLE_SECONDS: "300",
      TOKEN_TTL_SECONDS: "120",
    });
    expect(c.sessions?.idleMs).toBe(300_000);
  });
});
