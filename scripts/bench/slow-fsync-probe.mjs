// CreateTask on the bare server (bare-server.mjs: tasks' store and transaction) with each commit
// synchronous=FULL against group commit (BARE_GROUP_COMMIT=1, as tasks' CreateTask commits), on
// this disk and with every fsync/fdatasync made slower by strace's syscall delay injection (a
// cloud volume's 1-2 ms), at concurrency 1 and 32. strace starts the server with --seccomp-bpf,
// so only the sync calls stop in the tracer.
//   node scripts/bench/slow-fsync-probe.mjs [--calls 2000] [--delays 0,2000] (µs added per sync)
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { createHistogram, performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { MIGRATIONS } from "../../services/tasks/dist/tasks-store.js";
import { rawClient } from "./grpc-raw.mjs";
import { summary } from "./measure.mjs";

const { values: args } = parseArgs({ options: { calls: { type: "string" }, delays: { type: "string" } } });
const N = Number(args.calls ?? 2000);
const DELAYS = (args.delays ?? "0,2000").split(",").map(Number);
const root = resolve(import.meta.dirname, "../..");
const data = tempDir("slow-fsync-");
const readDb = join(data.path, "read.db");
openDatabase(readDb, MIGRATIONS).close();
const M = TaskService.method;

/** Starts bare-server.mjs (under strace when `delayUs` > 0); resolves { port, proc }. */
const start = (delayUs, group, file) =>
  new Promise((resolveP, reject) => {
    const server = [process.execPath, join(root, "scripts/bench/bare-server.mjs")];
    const cmd =
      delayUs > 0
        ? [
            "strace",
            "-f",
            "--seccomp-bpf",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fsync,fdatasync",
            "-e",
            `inject=fsync,fdatasync:delay_exit=${delayUs}`,
            ...server,
          ]
        : server;
    const proc = spawn(cmd[0], cmd.slice(1), {
      env: {
        ...process.env,
        READ_DB: readDb,
        WRITE_DB: join(data.path, file),
        BENCH_USER: "u1",
        ...(group ? { BARE_GROUP_COMMIT: "1" } : {}),
      },
      stdio: ["pipe", "pipe", "inherit"],
    });
    proc.once("exit", (code) => reject(new Error(`bare server exited (${code})`)));
    proc.stdout.on("data", (b) => {
      const m = /ready (\d+)/.exec(String(b));
      if (m) resolveP({ port: Number(m[1]), proc });
    });
  });

try {
  for (const delay of DELAYS) {
    for (const c of [1, 32]) {
      const line = [];
      for (const group of [false, true]) {
        const { port, proc } = await start(delay, group, `w-${randomUUID()}.db`);
        const client = rawClient(`127.0.0.1:${port}`);
        const input = () => create(M.createTask.input, { task: { title: "Task report", notes: "bench" } });
        for (let i = 0; i < 100; i++) await client.call(M.createTask, input());
        const h = createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
        let left = N;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: c }, async () => {
            while (left-- > 0) {
              const a = performance.now();
              await client.call(M.createTask, input());
              h.record(Math.max(1, Math.round((performance.now() - a) * 1e6)));
            }
          }),
        );
        const rate = Math.round(N / ((performance.now() - t0) / 1000));
        const q = summary(h);
        line.push(`${group ? "group commit" : "FULL each"} ${rate} req/s p50 ${q.p50} p99 ${q.p99} ms`);
        client.close();
        proc.removeAllListeners("exit");
        proc.stdin.end();
        await new Promise((r) => proc.once("exit", r));
      }
      console.log(`fsync +${delay / 1000} ms, c=${c}: ${line.join(" | ")}`);
    }
  }
} finally {
  data.remove();
}
