import { ConfigError } from "@taskmesh/platform";
import { describe, expect, it } from "vitest";
import { loadNotificationsConfig } from "./config.js";

const SECRET = "a-service-secret-of-at-least-32-characters";

describe("notifications config", () => {
  it("defaults to the topology's ports, email and webhooks off", () => {
    const c = loadNotificationsConfig({ TASKMESH_SERVICE_SECRET: SECRET });
    expect(c).toMatchObject({
      grpcPort: 50053,
      host: "127.0.0.1",
      dbPath: ".data/notifications.db",
      natsServers: ["nats://127.0.0.1:4222"],
      jwksUrl: "http://127.0.0.1:50061/.well-known/jwks.json",
      usersAddr: "127.0.0.1:50051",
      smtpUrl: "",
      webhookSecret: "",
      breakerFailures: 5,
    });
  });

  it("names the variable that is wrong", () => {
    const bad = (env: Record<string, string>) => () =>
      loadNotificationsConfig({ TASKMESH_SERVICE_SECRET: SECRET, ...env });
    expect(() => loadNotificationsConfig({})).toThrow(/TASKMESH_SERVICE_SECRET/);
    expect(bad({ SMTP_URL: "http://mail:25" })).toThrow(/SMTP_URL/);
    expect(bad({ WEBHOOK_SECRET: "short" })).toThrow(/WEBHOOK_SECRET/);
    expect(bad({ NATS_URL: "http://nats:4222" })).toThrow(/NATS_URL/);
    expect(bad({ USERS_ADDR: "users" })).toThrow(ConfigError);
    expect(
      loadNotificationsConfig({ TASKMESH_SERVICE_SECRET: SECRET, SMTP_URL: "smtp://127.0.0.1:2525" }).smtpUrl,
    ).toBe("smtp://127.0.0.1:2525");
  });
});
