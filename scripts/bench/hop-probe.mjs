// CPU per call of the edge hop: GetTask at concurrency 1, direct to tasks vs through the gateway (gRPC,
// and Connect JSON over HTTP/1.1 as browsers call it), with latency percentiles and CPU ms per call
// (utime+stime from /proc) of the gateway (per thread) and tasks.
//   node scripts/bench/hop-probe.mjs [calls] [direct,gateway,connect]
// PROBE_ENV='{"K":"v"}' adds service environment (e.g. NODE_OPTIONS with cpu-prof-preload.cjs and
// BENCH_CPU_PROF_DIR to profile the services while only the named paths run).

import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { Agent } from "node:http";
import { performance } from "node:perf_hooks";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { tempDir } from "@taskmesh/platform/testing";
import { startSystem } from "@taskmesh/runner";
import { rawClient } from "./grpc-raw.mjs";

const N = Number(process.argv[2] ?? 500);
const PATHS = (process.argv[3] ?? "direct,gateway,connect").split(",");
const cpu = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // ms (CLK_TCK 100)
};
const threads = (pid) =>
  Object.fromEntries(
    readdirSync(`/proc/${pid}/task`).map((t) => {
      const raw = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
      const name = raw.slice(raw.indexOf("(") + 1, raw.lastIndexOf(")"));
      const f = raw.split(") ")[1].split(" ");
      return [`${name}#${t}`, (Number(f[11]) + Number(f[12])) * 10];
    }),
  );
const data = tempDir("hop-probe-");
const t0 = performance.now();
const system = await startSystem({
  dataDir: data.path,
  freePorts: true,
  logLevel: "warn",
  env: {
    RATE_LIMIT_RPS: "0",
    LOGIN_RATE_LIMIT_PER_MINUTE: "0",
    ...(process.env.PROBE_ENV ? JSON.parse(process.env.PROBE_ENV) : {}),
  },
});
console.log(`ready in ${Math.round(performance.now() - t0)} ms`);
try {
  const gw = rawClient(system.endpoints.gateway.replace(/^http:\/\//, ""));
  const direct = rawClient(system.endpoints.grpc.tasks);
  const M = TaskService.method;
  const email = `p-${randomUUID()}@example.com`;
  const password = "correct-horse-battery";
  await gw.call(UserService.method.register, create(UserService.method.register.input, { email, password }));
  const { accessToken: token } = await gw.call(
    UserService.method.login,
    create(UserService.method.login.input, { email, password }),
  );
  const t = await direct.call(M.createTask, create(M.createTask.input, { task: { title: "x" } }), token);
  const req = create(M.getTask.input, { taskId: t.task.id });
  const connectClient = createClient(
    TaskService,
    createConnectTransport({
      baseUrl: system.endpoints.gateway,
      httpVersion: "1.1",
      // JSON, as the web client (connect-web) sends; connect-node would default to binary.
      useBinaryFormat: false,
      nodeOptions: { agent: new Agent({ keepAlive: true }) },
    }),
  );
  const auth = { headers: { authorization: `Bearer ${token}` } };
  const connect = { call: (_m, r) => connectClient.getTask(r, auth), close() {} };
  const pids = { gateway: system.services.gateway.pid, tasks: system.services.tasks.pid };
  for (const round of [1, 2]) {
    for (const [name, c] of [
      ["direct", direct],
      ["gateway", gw],
      ["connect", connect],
    ].filter(([name]) => PATHS.includes(name))) {
      for (let i = 0; i < 100; i++) await c.call(M.getTask, req, token);
      const thBefore = threads(pids.gateway);
      const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpu(p)]));
      const lat = [];
      const s = performance.now();
      for (let i = 0; i < N; i++) {
        const a = performance.now();
        await c.call(M.getTask, req, token);
        lat.push(performance.now() - a);
      }
      const el = performance.now() - s;
      lat.sort((a, b) => a - b);
      const cpuPer = Object.entries(pids)
        .map(([k, p]) => `${k} ${((cpu(p) - before[k]) / N).toFixed(2)}`)
        .join(", ");
      const thAfter = threads(pids.gateway);
      if (name !== "direct")
        console.log(
          Object.entries(thAfter)
            .map(([k, v]) => [k, (v - (thBefore[k] ?? 0)) / N])
            .filter(([, v]) => v > 0)
            .map(([k, v]) => `${k}=${v.toFixed(2)}`)
            .join(" "),
        );
      console.log(
        `round ${round} ${name.padEnd(8)} ${Math.round((N / el) * 1000)} req/s  p50 ${lat[N >> 1].toFixed(2)} p90 ${lat[Math.floor(N * 0.9)].toFixed(2)} ms; CPU ms/call: ${cpuPer}`,
      );
    }
  }
  gw.close();
  direct.close();
} finally {
  await system.stop();
  data.remove();
}
