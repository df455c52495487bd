import { describe, expect, it } from "vitest";
import { ConfigError, env, loadConfig } from "./config.js";
import { jwksUrlField, serverConfigSpec, serviceBaseConfig, serviceConfigSpec } from "./service-config.js";

const SECRET = "s".repeat(32);

function errorOf(load: () => unknown): Error {
  try {
    load();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a ConfigError");
}

describe("serviceConfigSpec", () => {
  it("defaults to the service's topology port, localhost, the .data dir, no mesh and info logs", () => {
    const c = serviceBaseConfig(loadConfig(serviceConfigSpec("tasks"), { TASKMESH_SERVICE_SECRET: SECRET }), "tasks");
    expect(c).toEqual({
      grpcPort: 50052,
      host: "127.0.0.1",
      dataDir: ".data",
      dbPath: ".data/tasks.db",
      serviceSecret: SECRET,
      mesh: "none",
      logLevel: "info",
      reconcileIntervalMs: 10_000,
      inboxRetentionMs: 7 * 86_400_000,
    });
  });

  it("puts the default database in TASKMESH_DATA_DIR, named after the service, and takes DB_PATH over it", () => {
    const load = (source: Record<string, string>) =>
      serviceBaseConfig(
        loadConfig(serviceConfigSpec("reminders"), { TASKMESH_SERVICE_SECRET: SECRET, ...source }),
        "reminders",
      );
    expect(load({ TASKMESH_DATA_DIR: "/var/lib/taskmesh" }).dbPath).toBe("/var/lib/taskmesh/reminders.db");
    expect(load({ TASKMESH_DATA_DIR: "/var/lib/taskmesh", DB_PATH: "/tmp/r.db" }).dbPath).toBe("/tmp/r.db");
  });

  it("reads every shared variable that is set", () => {
    const c = serviceBaseConfig(
      loadConfig(serviceConfigSpec("users"), {
        GRPC_PORT: "0",
        HOST: "0.0.0.0",
        TASKMESH_SERVICE_SECRET: SECRET,
        TASKMESH_MESH: "istio",
        LOG_LEVEL: "silent",
        OUTBOX_RECONCILE_INTERVAL_MS: "500",
        INBOX_RETENTION_MS: "86400000",
      }),
      "users",
    );
    expect(c).toMatchObject({
      grpcPort: 0,
      host: "0.0.0.0",
      mesh: "istio",
      logLevel: "silent",
      reconcileIntervalMs: 500,
      inboxRetentionMs: 86_400_000,
    });
    expect(() =>
      loadConfig(serviceConfigSpec("users"), { TASKMESH_SERVICE_SECRET: SECRET, OUTBOX_RECONCILE_INTERVAL_MS: "10" }),
    ).toThrow(/OUTBOX_RECONCILE_INTERVAL_MS/);
    // Under an hour would drop ids JetStream may still redeliver.
    expect(() =>
      loadConfig(serviceConfigSpec("users"), { TASKMESH_SERVICE_SECRET: SECRET, INBOX_RETENTION_MS: "60000" }),
    ).toThrow(/INBOX_RETENTION_MS/);
  });

  it("names a missing or too short service secret", () => {
    expect(() => loadConfig(serviceConfigSpec("tasks"), {})).toThrow(/TASKMESH_SERVICE_SECRET is required/);
    const err = errorOf(() => loadConfig(serviceConfigSpec("tasks"), { TASKMESH_SERVICE_SECRET: "s".repeat(31) }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain("TASKMESH_SERVICE_SECRET must be at least 32 characters");
  });

  it("names a bad GRPC_PORT, LOG_LEVEL and TASKMESH_MESH and the service's own bad variable in one error", () => {
    const spec = { ...serviceConfigSpec("analytics"), ANALYTICS_X: env.int({ min: 1 }) };
    const err = errorOf(() =>
      loadConfig(spec, {
        TASKMESH_SERVICE_SECRET: SECRET,
        GRPC_PORT: "70000",
        LOG_LEVEL: "loud",
        TASKMESH_MESH: "linkerd",
        ANALYTICS_X: "0",
      }),
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('GRPC_PORT must be a TCP port (0-65535), got "70000"');
    expect(err.message).toContain(
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    );
    expect(err.message).toContain('TASKMESH_MESH must be one of none, istio, got "linkerd"');
    expect(err.message).toContain("ANALYTICS_X must be >= 1");
  });
});

describe("serverConfigSpec", () => {
  it("is what the edge reads: no database, no service secret", () => {
    const c = loadConfig({ ...serverConfigSpec("gateway"), JWKS_URL: jwksUrlField() }, {});
    expect(c).toEqual({
      GRPC_PORT: 8080,
      HOST: "127.0.0.1",
      TASKMESH_MESH: "none",
      LOG_LEVEL: "info",
      JWKS_URL: "http://127.0.0.1:50061/.well-known/jwks.json",
    });
  });
});

describe("env.secret", () => {
  it("reads an unset optional secret as empty but still refuses a short one", () => {
    const spec = { WEBHOOK_SECRET: env.secret(16, "") };
    expect(loadConfig(spec, {}).WEBHOOK_SECRET).toBe("");
    expect(loadConfig(spec, { WEBHOOK_SECRET: "k".repeat(16) }).WEBHOOK_SECRET).toBe("k".repeat(16));
    expect(() => loadConfig(spec, { WEBHOOK_SECRET: "short" })).toThrow(
      /WEBHOOK_SECRET must be at least 16 characters/,
    );
  });
});
