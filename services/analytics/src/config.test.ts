import { ConfigError } from "@taskmesh/platform";
import { describe, expect, it } from "vitest";
import { loadAnalyticsConfig } from "./config.js";

const SECRET = "analytics-test-secret-of-at-least-32-chars";

describe("loadAnalyticsConfig", () => {
  it("defaults to port 50054, the data dir's analytics.db, local NATS and the users JWKS", () => {
    const c = loadAnalyticsConfig({ TASKMESH_SERVICE_SECRET: SECRET, TASKMESH_DATA_DIR: "/data" });
    expect(c).toMatchObject({
      grpcPort: 50054,
      host: "127.0.0.1",
      dbPath: "/data/analytics.db",
      natsServers: ["nats://127.0.0.1:4222"],
      jwksUrl: "http://127.0.0.1:50061/.well-known/jwks.json",
    });
  });

  it("takes DB_PATH (e.g. a rebuilt database) and several NATS servers", () => {
    const c = loadAnalyticsConfig({
      TASKMESH_SERVICE_SECRET: SECRET,
      DB_PATH: "/tmp/rebuilt.db",
      NATS_URL: "nats://a:4222, nats://b:4222",
    });
    expect(c.dbPath).toBe("/tmp/rebuilt.db");
    expect(c.natsServers).toEqual(["nats://a:4222", "nats://b:4222"]);
  });

  it("names the variable that is wrong", () => {
    expect(() => loadAnalyticsConfig({ TASKMESH_SERVICE_SECRET: "short" })).toThrow(/TASKMESH_SERVICE_SECRET/);
    expect(() => loadAnalyticsConfig({ TASKMESH_SERVICE_SECRET: SECRET, NATS_URL: "http://x" })).toThrow(ConfigError);
    expect(() => loadAnalyticsConfig({ TASKMESH_SERVICE_SECRET: SECRET, GRPC_PORT: "x" })).toThrow(/GRPC_PORT/);
  });
});
