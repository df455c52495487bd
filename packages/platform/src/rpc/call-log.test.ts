import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "../..");
const platform = pathToFileURL(join(pkg, "dist/index.js")).href;
const health = pathToFileURL(join(pkg, "../gen/dist/grpc/health/v1/health_pb.js")).href;

/** What a service's main.js does: a client by address, and one over that client's channel (the gateway's readiness). */
const script = `
import { createGrpcClient } from ${JSON.stringify(platform)};
import { Health } from ${JSON.stringify(health)};
const byAddress = createGrpcClient(Health, { address: process.env.TASKS_ADDR });
await byAddress.check({});
await byAddress.check({});
const overChannel = createGrpcClient(Health, { address: "unused", channelOptions: { channelOverride: byAddress.channel.getChannel() } });
await overChannel.check({ service: "x" });
const elsewhere = createGrpcClient(Health, { address: "127.0.0.1:" + process.env.OTHER_PORT });
await elsewhere.check({}).catch(() => {});
byAddress.close(); elsewhere.close();
`;

describe("TASKMESH_CALL_LOG", () => {
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-call-log-"));
  const server = new grpc.Server();
  let port = 0;
  beforeAll(async () => {
    const id = (b: Buffer) => b;
    server.addService(
      {
        check: {
          path: "/grpc.health.v1.Health/Check",
          requestStream: false,
          responseStream: false,
          requestSerialize: id,
          requestDeserialize: id,
          responseSerialize: id,
          responseDeserialize: id,
        },
      },
      { check: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(0)) },
    );
    port = await new Promise((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
  });
  afterAll(() => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  // Asynchronously: the server above answers from this process's event loop.
  const run = async (main: string, log: string) => {
    mkdirSync(dirname(main), { recursive: true });
    writeFileSync(main, script);
    await promisify(execFile)(process.execPath, [main], {
      env: { ...process.env, TASKMESH_CALL_LOG: log, TASKS_ADDR: `127.0.0.1:${port}`, OTHER_PORT: "1" },
    });
  };

  it("records each distinct call of a service process once: caller from its main.js, callee from <NAME>_ADDR", async () => {
    const log = join(dir, "calls.jsonl");
    await run(join(dir, "services", "gateway", "dist", "main.js"), log);
    const lines = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { caller: "gateway", callee: "tasks", method: "/grpc.health.v1.Health/Check" },
      { caller: "gateway", callee: "unknown (127.0.0.1:1)", method: "/grpc.health.v1.Health/Check" },
    ]);
  });

  it("records nothing in a process that is not a service's main.js (a test, a script)", async () => {
    const log = join(dir, "none.jsonl");
    await run(join(dir, "scripts", "probe.mjs"), log);
    expect(existsSync(log)).toBe(false);
  });
});
