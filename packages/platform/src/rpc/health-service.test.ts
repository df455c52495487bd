import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcClient, type GrpcClient } from "./grpc-client.js";
import { HealthService } from "./health-service.js";

describe("HealthService", () => {
  const health = new HealthService({ "": "SERVING", "a.Service": "NOT_SERVING" });
  const server = new grpc.Server();
  let client: GrpcClient<typeof Health>;
  beforeAll(async () => {
    health.addToServer(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    client = createGrpcClient(Health, { address: `127.0.0.1:${port}`, retries: false });
  });
  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  it("answers Check with the status set, and NOT_FOUND for a name never set", async () => {
    expect((await client.check({ service: "" })).status).toBe(Status.SERVING);
    expect((await client.check({ service: "a.Service" })).status).toBe(Status.NOT_SERVING);
    health.setStatus("a.Service", "SERVING");
    expect((await client.check({ service: "a.Service" })).status).toBe(Status.SERVING);
    const unknown = await client.check({ service: "nope.Service" }).catch((e) => e);
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
  });

  it("lists every name with its status", async () => {
    health.setStatus("b.Service", "NOT_SERVING");
    const { statuses } = await client.list({});
    expect(Object.fromEntries(Object.entries(statuses).map(([name, r]) => [name, r.status]))).toMatchObject({
      "": Status.SERVING,
      "b.Service": Status.NOT_SERVING,
    });
  });

  it("watches: the current status at once, then each change only (SERVICE_UNKNOWN until a name is set)", async () => {
    const seen = async (service: string, changes: (() => void)[], n: number) => {
      const ctl = new AbortController();
      const out: Status[] = [];
      for await (const res of client.watch({ service }, { signal: ctl.signal })) {
        out.push(res.status);
        if (out.length === n) break;
        // Each change after the previous answer arrived; a repeat of the same status first, which sends nothing.
        changes[out.length - 1]?.();
      }
      ctl.abort();
      return out;
    };
    const c = "c.Service";
    expect(
      await seen(
        c,
        [
          () => health.setStatus(c, "NOT_SERVING"),
          () => {
            health.setStatus(c, "NOT_SERVING");
            health.setStatus(c, "SERVING");
          },
        ],
        3,
      ),
    ).toEqual([Status.SERVICE_UNKNOWN, Status.NOT_SERVING, Status.SERVING]);
  });
});
