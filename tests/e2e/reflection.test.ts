import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bufCurl, type E2E, startE2E } from "./harness.js";

let e2e: E2E;
beforeAll(async () => {
  e2e = await startE2E();
});
afterAll(async () => {
  await e2e?.stop();
});

const lines = (out: string) => out.trim().split("\n").sort();

describe("server reflection", () => {
  it("`buf curl --list-services` on the gateway lists the public services and no internal one", async () => {
    const services = lines(await bufCurl(["--list-services", e2e.system.endpoints.gateway]));
    expect(services).toContain("taskmesh.users.v1.UserService");
    expect(services).toContain("taskmesh.tasks.v1.TaskService");
    expect(services.filter((s) => /Internal/.test(s))).toEqual([]);
  });

  it("each backend lists its own public and internal services on its own port", async () => {
    const { grpc } = e2e.system.endpoints;
    const users = lines(await bufCurl(["--list-services", `http://${grpc.users}`]));
    expect(users).toEqual(
      expect.arrayContaining(["taskmesh.users.v1.UserService", "taskmesh.users.v1.UserInternalService"]),
    );
    expect(users.filter((s) => s.startsWith("taskmesh.tasks."))).toEqual([]);
    const tasks = lines(await bufCurl(["--list-services", `http://${grpc.tasks}`]));
    expect(tasks).toEqual(
      expect.arrayContaining(["taskmesh.tasks.v1.TaskService", "taskmesh.tasks.v1.TaskInternalService"]),
    );
    expect(tasks.filter((s) => s.startsWith("taskmesh.users."))).toEqual([]);
  });

  it("describes methods well enough for `buf curl` to call one by name through the gateway", async () => {
    const out = await bufCurl([
      "-d",
      JSON.stringify({ email: "reflection@example.com", password: "correct-horse-battery" }),
      `${e2e.system.endpoints.gateway}/taskmesh.users.v1.UserService/Register`,
    ]);
    expect(JSON.parse(out).user.email).toBe("reflection@example.com");
  });
});

describe("health at the edge", () => {
  it("answers for each public service from its backend's own grpc.health.v1 (the gateway asks it)", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: e2e.system.endpoints.gateway }));
    for (const service of [
      "taskmesh.users.v1.UserService",
      "taskmesh.tasks.v1.TaskService",
      "taskmesh.notifications.v1.NotificationService",
      "taskmesh.analytics.v1.AnalyticsService",
    ]) {
      const res = await health.check({ service });
      expect(res.status, service).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
  });
});
