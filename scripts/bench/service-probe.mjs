// CPU per call of the tasks service against the bare grpc-js server (bare-server.mjs: the same
// store, SQL and protobuf-es encoding, without auth, validation, interceptors or telemetry):
// ListTasks (page 50 of `seed` tasks), GetTask and CreateTask at concurrency 1, with latency
// percentiles and CPU ms per call (utime+stime from /proc) of each server process. On a shared,
// noisy machine CPU per call is steadier than req/s.
//   node scripts/bench/service-probe.mjs [calls] [seed]     (PROBE_CPU_PROF=<dir> profiles tasks)
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { create } from "@bufbuild/protobuf";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { tempDir } from "@taskmesh/platform/testing";
import { startSystem } from "@taskmesh/runner";
import { rawClient } from "./grpc-raw.mjs";
import { spawnReady } from "./spawn-ready.mjs";

const N = Number(process.argv[2] ?? 1000);
const SEED = Number(process.argv[3] ?? 1000);
const root = resolve(import.meta.dirname, "../..");
const cpu = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // ms (CLK_TCK 100)
};
const prof = process.env.PROBE_CPU_PROF;
const data = tempDir("service-probe-");
const system = await startSystem({
  dataDir: data.path,
  freePorts: true,
  logLevel: "warn",
  env: {
    RATE_LIMIT_RPS: "0",
    LOGIN_RATE_LIMIT_PER_MINUTE: "0",
    ...(prof
      ? {
          NODE_OPTIONS: `--require ${join(root, "scripts/bench/cpu-prof-preload.cjs")}`,
          BENCH_CPU_PROF_DIR: resolve(prof),
        }
      : {}),
  },
});
let bare;
try {
  const gw = rawClient(system.endpoints.gateway.replace(/^http:\/\//, ""));
  const direct = rawClient(system.endpoints.grpc.tasks);
  const M = TaskService.method;
  const email = `p-${randomUUID()}@example.com`;
  const password = "correct-horse-battery";
  const reg = await gw.call(
    UserService.method.register,
    create(UserService.method.register.input, { email, password }),
  );
  const { accessToken: token } = await gw.call(
    UserService.method.login,
    create(UserService.method.login.input, { email, password }),
  );
  const input = (i) => create(M.createTask.input, { task: { title: `Task ${i} report`, notes: "bench" } });
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < SEED) await direct.call(M.createTask, input(next++), token);
    }),
  );
  const some = (await direct.call(M.listTasks, create(M.listTasks.input, { pageSize: 1 }), token)).tasks[0];
  const holder = {};
  const port = await spawnReady(holder, "bare-server.mjs", {
    NODE_OPTIONS: "",
    READ_DB: join(data.path, "tasks.db"),
    WRITE_DB: join(data.path, "bare.db"),
    BENCH_USER: reg.user.id,
  });
  bare = holder.proc;
  const bareClient = rawClient(`127.0.0.1:${port}`);
  const calls = {
    ListTasks: [M.listTasks, () => create(M.listTasks.input, { pageSize: 50 })],
    GetTask: [M.getTask, () => create(M.getTask.input, { taskId: some.id })],
    CreateTask: [M.createTask, () => input(next++)],
  };
  const targets = { tasks: [direct, system.services.tasks.pid], bare: [bareClient, bare.pid] };
  for (const round of [1, 2]) {
    for (const [name, [method, req]] of Object.entries(calls)) {
      const line = [];
      for (const [who, [client, pid]] of Object.entries(targets)) {
        for (let i = 0; i < 100; i++) await client.call(method, req(), token);
        const before = cpu(pid);
        const lat = [];
        const s = performance.now();
        for (let i = 0; i < N; i++) {
          const a = performance.now();
          await client.call(method, req(), token);
          lat.push(performance.now() - a);
        }
        const el = performance.now() - s;
        lat.sort((a, b) => a - b);
        line.push(
          `${who} ${Math.round((N / el) * 1000)} req/s p50 ${lat[N >> 1].toFixed(2)} ms, CPU ${((cpu(pid) - before) / N).toFixed(3)} ms/call`,
        );
      }
      console.log(`round ${round} ${name.padEnd(10)} ${line.join(" | ")}`);
    }
  }
  gw.close();
  direct.close();
  bareClient.close();
} finally {
  bare?.removeAllListeners("exit");
  bare?.kill("SIGTERM");
  await system.stop();
  data.remove();
}
