import { Health, HealthCheckResponse_ServingStatus as Status } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { UserInternalService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../log/logger.js";
import { createGrpcClient } from "./grpc-client.js";
import { GrpcServer, LIVENESS_SERVICE, register } from "./grpc-server.js";

describe("GrpcServer health", () => {
  let dbUp = true;
  const server = new GrpcServer({
    name: "health",
    logger: createLogger("test", { level: "silent" }),
    readiness: () => dbUp,
    readinessIntervalMs: 50,
    services: [register(UserInternalService, { getUserPreferences: () => ({}) }, { kind: "internal" })],
  });
  afterAll(() => server.shutdown(500));

  it("reports readiness from its dependencies, liveness separately, and NOT_SERVING on shutdown", async () => {
    const port = await server.listen(0);
    const health = createGrpcClient(Health, { address: `127.0.0.1:${port}` });
    const status = async (service: string) => (await health.check({ service })).status;
    expect(await status("")).toBe(Status.SERVING);
    expect(await status(UserInternalService.typeName)).toBe(Status.SERVING);

    dbUp = false;
    await new Promise((r) => setTimeout(r, 200));
    expect(await status("")).toBe(Status.NOT_SERVING);
    expect(await status(LIVENESS_SERVICE)).toBe(Status.SERVING);

    dbUp = true;
    await new Promise((r) => setTimeout(r, 200));
    expect(await status("")).toBe(Status.SERVING);
    const unknown = await health.check({ service: "nope.Service" }).catch((e) => e);
    expect(unknown.code).toBe(5); // NOT_FOUND, per the health protocol
    health.close();
  });

  it("re-checks readiness when asked, not only at its interval, and never after shutdown began", async () => {
    let natsUp = false;
    const slow = new GrpcServer({
      name: "recheck",
      logger: createLogger("test", { level: "silent" }),
      readiness: () => natsUp,
      readinessIntervalMs: 60_000,
      services: [],
    });
    await slow.checkReadiness(); // before listen(): nothing to report yet
    const port = await slow.listen(0);
    const health = createGrpcClient(Health, { address: `127.0.0.1:${port}` });
    const status = async () => (await health.check({ service: "" })).status;
    expect(await status()).toBe(Status.NOT_SERVING);
    natsUp = true;
    expect(await status()).toBe(Status.NOT_SERVING); // the next interval is a minute away
    await slow.checkReadiness();
    expect(await status()).toBe(Status.SERVING);

    const stopping = slow.shutdown(500);
    await slow.checkReadiness();
    expect(slow.ready).toBe(true); // unchanged: the check did not run
    await stopping;
    health.close();
  });
});
