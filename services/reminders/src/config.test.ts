import { ConfigError } from "@taskmesh/platform";
import { describe, expect, it } from "vitest";
import { loadRemindersConfig } from "./config.js";

const SECRET = "x".repeat(32);

describe("loadRemindersConfig", () => {
  it("defaults to port 50055, the data dir's reminders.db and the local NATS", () => {
    const c = loadRemindersConfig({ TASKMESH_SERVICE_SECRET: SECRET });
    expect(c.grpcPort).toBe(50055);
    expect(c.dbPath).toBe(".data/reminders.db");
    expect(c.natsServers).toEqual(["nats://127.0.0.1:4222"]);
    expect(c.schedulerMaxSleepMs).toBe(60_000);
  });

  it("takes DB_PATH, several NATS servers and the runner's variables", () => {
    const c = loadRemindersConfig({
      TASKMESH_SERVICE_SECRET: SECRET,
      GRPC_PORT: "6000",
      DB_PATH: "/tmp/r.db",
      NATS_URL: "nats://a:4222, nats://b:4222",
    });
    expect([c.grpcPort, c.dbPath, c.natsServers]).toEqual([6000, "/tmp/r.db", ["nats://a:4222", "nats://b:4222"]]);
  });

  it("names the variable when the secret is missing or short, or NATS_URL is not a NATS URL", () => {
    expect(() => loadRemindersConfig({})).toThrow(/TASKMESH_SERVICE_SECRET/);
    expect(() => loadRemindersConfig({ TASKMESH_SERVICE_SECRET: "short" })).toThrow(ConfigError);
    expect(() => loadRemindersConfig({ TASKMESH_SERVICE_SECRET: SECRET, NATS_URL: "http://x:1" })).toThrow(/NATS_URL/);
  });
});
