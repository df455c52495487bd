import { ConfigError } from "@taskmesh/platform";
import { describe, expect, it } from "vitest";
import { loadTasksConfig } from "./config.js";

const secret = "s".repeat(32);

describe("loadTasksConfig", () => {
  it("defaults NATS_URL to the local nats-server and reads several comma-separated servers", () => {
    expect(loadTasksConfig({ TASKMESH_SERVICE_SECRET: secret }).natsServers).toEqual(["nats://127.0.0.1:4222"]);
    const c = loadTasksConfig({ TASKMESH_SERVICE_SECRET: secret, NATS_URL: "nats://n1:4222,tls://n2:4222" });
    expect(c.natsServers).toEqual(["nats://n1:4222", "tls://n2:4222"]);
  });

  it("refuses a NATS_URL that is not nats:// or tls://, naming the variable", () => {
    const load = () => loadTasksConfig({ TASKMESH_SERVICE_SECRET: secret, NATS_URL: "http://nats:4222" });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(/NATS_URL must be nats:\/\/host:port/);
  });
});
