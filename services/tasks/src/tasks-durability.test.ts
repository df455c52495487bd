import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { fdatasync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { createGrpcClient } from "@taskmesh/platform";
import { freePort, tempDir, waitFor } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NO_NATS, SERVICE_SECRET, startTasks, testIssuer } from "./tasks.test-util.js";

const ROOT = resolve(fileURLToPath(import.meta.url), "../../../..");
const MAIN = join(ROOT, "services/tasks/dist/main.js");

describe("tasks durability", () => {
  it("keeps a task acknowledged by CreateTask across closing and reopening the database", async () => {
    const dir = tempDir("tasks-reopen-");
    try {
      const userId = crypto.randomUUID();
      const first = await startTasks({ dir: dir.path });
      const req = { task: { title: "survive a restart" }, idempotencyKey: "restart-key" };
      const { task } = await (await first.as(userId)).createTask(req);
      await first.stop({ remove: false });

      const second = await startTasks({ dir: dir.path });
      const c = await second.as(userId);
      expect((await c.getTask({ taskId: task?.id ?? "" })).task?.title).toBe("survive a restart");
      // The idempotency key survived too: the retry still names the same task.
      expect((await c.createTask(req)).task?.id).toBe(task?.id);
      await second.stop({ remove: false });
    } finally {
      dir.remove();
    }
  });

  it("answers CreateTask only once the WAL holding its commit is fsynced", async () => {
    const held: (() => void)[] = [];
    const harness = await startTasks({
      deps: { walSync: { fdatasync: (fd, cb) => held.push(() => fdatasync(fd, cb)) } },
    });
    try {
      const c = await harness.as(crypto.randomUUID());
      let answered = false;
      const call = c.createTask({ task: { title: "on disk before the answer" } }).then((r) => {
        answered = true;
        return r;
      });
      await waitFor("the create's fdatasync", () => held.length > 0);
      await new Promise((r) => setTimeout(r, 100));
      expect(answered).toBe(false);
      expect(harness.countRows()).toBe(1); // committed, waiting for the disk
      while (!answered) {
        held.shift()?.();
        await new Promise((r) => setTimeout(r, 10));
      }
      expect((await call).task?.title).toBe("on disk before the answer");
    } finally {
      for (const release of held) release();
      await harness.stop();
    }
  });

  describe("the main.ts process", () => {
    const dir = tempDir("tasks-kill-");
    let issuer: Awaited<ReturnType<typeof testIssuer>>;
    let jwks: Server;
    let jwksUrl: string;
    const children: ChildProcess[] = [];

    beforeAll(async () => {
      // The child runs the built service as `npm start` does; build it (incrementally) first.
      execFileSync("npx", ["tsc", "-b", "services/tasks"], { cwd: ROOT, stdio: "pipe", timeout: 120_000 });
      issuer = await testIssuer();
      // A real JWKS over HTTP, as the users service serves it.
      jwks = createServer((_, res) =>
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(issuer.jwks)),
      );
      jwks.listen(0, "127.0.0.1");
      await once(jwks, "listening");
      const addr = jwks.address();
      jwksUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/.well-known/jwks.json`;
    }, 180_000);

    afterAll(async () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      jwks?.close();
      dir.remove();
    });

    async function startChild(): Promise<{ child: ChildProcess; address: string }> {
      const port = await freePort();
      const child = spawn(process.execPath, [MAIN], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH,
          GRPC_PORT: String(port),
          TASKMESH_DATA_DIR: dir.path,
          TASKMESH_SERVICE_SECRET: SERVICE_SECRET,
          JWKS_URL: jwksUrl,
          // NATS unreachable: start-up, writes and the SIGTERM drain must not wait for it.
          NATS_URL: NO_NATS,
          LOG_LEVEL: "info",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      let output = "";
      child.stdout?.on("data", (d) => (output += d));
      child.stderr?.on("data", (d) => (output += d));
      const address = `127.0.0.1:${port}`;
      // main.ts logs "tasks serving" once listening; then health must say SERVING.
      for (let i = 0; !output.includes('"msg":"tasks serving"'); i++) {
        if (child.exitCode !== null) throw new Error(`tasks exited with ${child.exitCode}: ${output}`);
        if (i > 200) throw new Error(`tasks did not start: ${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const health = createGrpcClient(Health, { address });
      try {
        expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      } finally {
        health.close();
      }
      return { child, address };
    }

    it("keeps a task acknowledged right before SIGKILL, and drains on SIGTERM", async () => {
      const userId = crypto.randomUUID();
      const token = await issuer.token(userId);
      const metadata = () => ({ authorization: `Bearer ${token}` });

      const first = await startChild();
      const c1 = createGrpcClient(TaskService, { address: first.address, metadata });
      const { task } = await c1.createTask({ task: { title: "acknowledged then killed" } });
      first.child.kill("SIGKILL");
      c1.close();
      const [, signal] = await once(first.child, "exit");
      expect(signal).toBe("SIGKILL");

      const second = await startChild();
      const c2 = createGrpcClient(TaskService, { address: second.address, metadata });
      expect((await c2.getTask({ taskId: task?.id ?? "" })).task?.title).toBe("acknowledged then killed");
      c2.close();
      second.child.kill("SIGTERM");
      const [code] = await once(second.child, "exit");
      expect(code).toBe(0);
    });
  });
});
