// Where a CreateTask's time and CPU go, in the whole system (npm start --no-build as the bench
// starts it, plus bare-server.mjs):
// - closed loop at --concurrency 1[,32]: bare server, tasks direct, through the gateway; latency
//   percentiles, and CPU ms per create of every process (utime+stime from /proc, nats-server
//   included), so the consumers' share of a create shows too;
// - --syncs: fsync + fdatasync calls per create, per process, counted by `perf stat` on the
//   syscall tracepoints (cheap, unlike strace) during each loop;
// - --rates 300,500: open loop through the gateway at those creates/s: achieved rate, failed
//   creates, latency, and CPU ms per create of every process (the sum says how many cores a rate takes).
//   node scripts/bench/write-probe.mjs [--calls 1000] [--concurrency 1,32] [--targets bare,direct,gateway]
//     [--syncs] [--rates 300,500] [--duration 4000]     (BARE_GROUP_COMMIT=1: the bare server commits as CreateTask does)
//   PROBE_CPU_PROF=<dir> profiles every service; PROBE_ENV='{"K":"v"}' adds service environment.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { createHistogram, performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { tempDir } from "@taskmesh/platform/testing";
import { startSystem } from "@taskmesh/runner";
import { rawClient } from "./grpc-raw.mjs";
import { openLoop, summary } from "./measure.mjs";
import { spawnReady } from "./spawn-ready.mjs";

const { values: args } = parseArgs({
  options: {
    calls: { type: "string" },
    syncs: { type: "boolean" },
    rates: { type: "string" },
    duration: { type: "string" },
    targets: { type: "string" },
    concurrency: { type: "string" },
  },
});
const N = Number(args.calls ?? 1000);
const RATES = args.rates ? args.rates.split(",").map(Number) : [];
const DURATION = Number(args.duration ?? 4000);
const CONCURRENCY = (args.concurrency ?? "1").split(",").map(Number);
const TARGETS = (args.targets ?? "bare,direct,gateway").split(",");
const root = resolve(import.meta.dirname, "../..");
const cpu = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // ms (CLK_TCK 100)
};
const prof = process.env.PROBE_CPU_PROF;
const data = tempDir("write-probe-");
const system = await startSystem({
  dataDir: data.path,
  freePorts: true,
  logLevel: "warn",
  env: {
    RATE_LIMIT_RPS: "0",
    LOGIN_RATE_LIMIT_PER_MINUTE: "0",
    MAX_TASKS_PER_USER: "1000000",
    ...(process.env.PROBE_ENV ? JSON.parse(process.env.PROBE_ENV) : {}),
    ...(prof
      ? {
          NODE_OPTIONS: `--require ${join(root, "scripts/bench/cpu-prof-preload.cjs")}`,
          BENCH_CPU_PROF_DIR: resolve(prof),
        }
      : {}),
  },
});
let bare;
/** CPU ms of each process (and the sum) since `before`, per `n` creates. */
const cpuPer = (pids, before, n) => {
  const per = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, (cpu(p) - before[k]) / n]));
  const sum = Object.values(per).reduce((a, b) => a + b, 0);
  return `${Object.entries(per)
    .filter(([, v]) => v >= 0.005)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(", ")}; sum ${sum.toFixed(2)}`;
};
const snapshot = (pids) => Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpu(p)]));
const perCreate = (counts, n) =>
  Object.entries(counts)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${(v / n).toFixed(2)}`)
    .join(", ");
/** Counts each pid's fsync and fdatasync calls (perf's syscall tracepoints, cheap); `stop()` resolves them. */
const countSyncs = (pids) => {
  const runs = Object.entries(pids).map(([k, pid]) => {
    const p = spawn(
      "perf",
      ["stat", "-x", ",", "-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync", "-p", String(pid)],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let err = "";
    p.stderr.on("data", (b) => {
      err += b;
    });
    const done = new Promise((r) => p.once("exit", () => r(err)));
    return { k, p, done };
  });
  return async () => {
    const counts = {};
    for (const { k, p, done } of runs) {
      p.kill("SIGINT");
      const out = await done;
      counts[k] = 0;
      for (const m of out.matchAll(/^(\d+),[^,]*,syscalls:sys_enter_f(?:data)?sync/gm)) counts[k] += Number(m[1]);
    }
    return counts;
  };
};
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
  let next = 0;
  const input = () => create(M.createTask.input, { task: { title: `Task ${next++} report`, notes: "bench" } });
  const holder = {};
  const port = await spawnReady(holder, "bare-server.mjs", {
    NODE_OPTIONS: "",
    READ_DB: join(data.path, "tasks.db"),
    WRITE_DB: join(data.path, "bare.db"),
    BENCH_USER: reg.user.id,
  });
  bare = holder.proc;
  const bareClient = rawClient(`127.0.0.1:${port}`);
  const pids = Object.fromEntries(Object.entries(system.services).map(([k, s]) => [k, s.pid]));
  pids.bare = bare.pid;
  pids.client = process.pid; // this load generator
  const targets = { bare: bareClient, direct, gateway: gw };
  for (const [round, c] of CONCURRENCY.flatMap((c) => [
    [1, c],
    [2, c],
  ])) {
    for (const who of TARGETS) {
      const client = targets[who];
      for (let i = 0; i < 100; i++) await client.call(M.createTask, input(), token);
      await new Promise((r) => setTimeout(r, 300)); // the consumers finish the warm-up's events
      const stopTrace = args.syncs ? countSyncs(pids) : undefined;
      if (stopTrace) await new Promise((r) => setTimeout(r, 500)); // perf attached
      const before = snapshot(pids);
      const h = createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
      const s = performance.now();
      let left = N;
      await Promise.all(
        Array.from({ length: c }, async () => {
          while (left-- > 0) {
            const a = performance.now();
            await client.call(M.createTask, input(), token);
            h.record(Math.max(1, Math.round((performance.now() - a) * 1e6)));
          }
        }),
      );
      const el = performance.now() - s;
      await new Promise((r) => setTimeout(r, 300)); // the events' effects belong to this loop
      const line = cpuPer(pids, before, N);
      const fs = stopTrace ? await stopTrace() : undefined;
      const q = summary(h);
      console.log(
        `round ${round} c=${c} ${who.padEnd(7)} ${Math.round((N / el) * 1000)} req/s p50 ${q.p50} p99 ${q.p99} ms; CPU ms/create: ${line}`,
      );
      if (fs) console.log(`  fsyncs/create: ${perCreate(fs, N)}`);
    }
  }
  for (const rate of RATES) {
    const h = createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
    await new Promise((r) => setTimeout(r, 1000));
    const stopTrace = args.syncs ? countSyncs(pids) : undefined;
    if (stopTrace) await new Promise((r) => setTimeout(r, 500));
    const before = snapshot(pids);
    let ok = 0;
    const sent = await openLoop(
      async () => {
        const a = performance.now();
        await gw.call(M.createTask, input(), token);
        h.record(Math.max(1, Math.round((performance.now() - a) * 1e6)));
        ok++;
      },
      { rate, durationMs: DURATION },
    );
    await new Promise((r) => setTimeout(r, 500));
    const line = cpuPer(pids, before, ok);
    const fs = stopTrace ? await stopTrace() : undefined;
    const q = summary(h);
    console.log(
      `open loop ${rate}/s (sent ${sent.sentRate}/s): ${ok} ok, failed ${JSON.stringify(sent.errors)}, p50 ${q.p50} p99 ${q.p99} ms; CPU ms/create: ${line}`,
    );
    if (fs) console.log(`  fsyncs/create: ${perCreate(fs, ok)}`);
  }
  console.log(
    `load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  gw.close();
  direct.close();
  bareClient.close();
} finally {
  bare?.removeAllListeners("exit");
  bare?.kill("SIGTERM");
  await system.stop();
  data.remove();
}
