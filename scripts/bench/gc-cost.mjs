// CPU per request of the services under a fixed workload, for comparing node flags such as
// --max-semi-space-size (packages/platform/src/process/node-flags.ts): CPU time (utime + stime
// from /proc) barely depends on what else the machine runs, where throughput does.
//   node scripts/bench/gc-cost.mjs [--requests 3000]
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { tempDir } from "@taskmesh/platform/testing";
import { startSystem } from "@taskmesh/runner";
import { rawClient } from "./grpc-raw.mjs";

const { values: args } = parseArgs({ options: { requests: { type: "string" } } });
const N = Number(args.requests ?? 3000);
const TICK_MS = 10; // USER_HZ = 100 on Linux
const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime
};
const data = tempDir("taskmesh-gc-cost-");
const system = await startSystem({
  dataDir: data.path,
  freePorts: true,
  logLevel: "warn",
  env: { RATE_LIMIT_RPS: "0", LOGIN_RATE_LIMIT_PER_MINUTE: "0", MAX_TASKS_PER_USER: "1000000" },
});
try {
  const gw = rawClient(system.endpoints.gateway.replace(/^http:\/\//, ""));
  const email = `gc-${randomUUID()}@example.com`;
  const password = "correct-horse-battery";
  await gw.call(UserService.method.register, create(UserService.method.register.input, { email, password }));
  const { accessToken } = await gw.call(
    UserService.method.login,
    create(UserService.method.login.input, { email, password }),
  );
  const M = TaskService.method;
  const procs = ["gateway", "tasks", "analytics"].map((n) => [n, system.services[n].pid]);
  const before = Object.fromEntries(procs.map(([n, pid]) => [n, cpuMs(pid)]));
  let i = 0;
  const t0 = performance.now();
  // Half writes, half list reads of the growing list, 16 in flight.
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (i < N) {
        const k = i++;
        if (k % 2 === 0)
          await gw.call(
            M.createTask,
            create(M.createTask.input, { task: { title: `Task ${k}`, notes: "gc" } }),
            accessToken,
          );
        else await gw.call(M.listTasks, create(M.listTasks.input, { pageSize: 50 }), accessToken);
      }
    }),
  );
  const wall = Math.round(performance.now() - t0);
  const per1k = procs.map(([n, pid]) => `${n} ${Math.round(((cpuMs(pid) - before[n]) / N) * 1000)}`).join(", ");
  gw.close?.();
  console.log(
    `${N} requests in ${wall} ms; CPU ms per 1000 requests: ${per1k}; load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
} finally {
  await system.stop();
  data.remove();
}
