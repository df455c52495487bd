// Start-up wall time, when each process was ready (ms after the start began: a process that waits
// on something other than CPU stands out), the CPU each service spent until all were ready (utime + stime from /proc,
// which other load on the machine skews less than wall time) and idle RSS/PSS 3 s later, of the
// system built in each <root> (a checkout with node_modules and `tsc -b` done), started as
// `npm start --no-build` does. Give two roots to alternate an old and a new tree:
//   node scripts/bench/startup-cost.mjs [--rounds 2] <root> [<root> …]
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

const { values: args, positionals } = parseArgs({
  options: { rounds: { type: "string" } },
  allowPositionals: true,
});
const roots = (positionals.length > 0 ? positionals : ["."]).map((r) => resolve(r));
const kib = (pid, key) => {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
};
const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, USER_HZ 100
};
for (let round = 0; round < Number(args.rounds ?? 2); round++) {
  for (const root of roots) {
    const { startSystem } = await import(`${root}/packages/runner/dist/index.js`);
    const { tempDir } = await import(`${root}/packages/platform/dist/testing/index.js`);
    const data = tempDir("taskmesh-startup-");
    const t0 = performance.now();
    const readyAt = [];
    const system = await startSystem({
      root,
      dataDir: data.path,
      freePorts: true,
      logLevel: "warn",
      // An older tree's runner may not call it; then the line says nothing about it.
      onReady: (name) => readyAt.push(`${name} ${Math.round(performance.now() - t0)}`),
    });
    const ms = Math.round(performance.now() - t0);
    const load = loadavg()[0].toFixed(1);
    const services = Object.entries(system.services).filter(([n]) => n !== "nats");
    const cpu = services.map(([n, s]) => [n, cpuMs(s.pid)]);
    await new Promise((r) => setTimeout(r, 3000));
    const mem = services.map(([n, s]) => [n, kib(s.pid, "Rss"), kib(s.pid, "Pss")]);
    const sum = (xs) => xs.reduce((a, b) => a + b, 0);
    console.log(
      `${root}: ready ${ms} ms (load ${load}; ready at ${readyAt.join(", ")}); CPU to ready ${sum(cpu.map((c) => c[1]))} ms ` +
        `(${cpu.map(([n, c]) => `${n} ${c}`).join(", ")}); idle RSS/PSS MiB ` +
        `${mem.map(([n, r, p]) => `${n} ${r}/${p}`).join(", ")}; total ${sum(mem.map((m) => m[1]))}/${sum(mem.map((m) => m[2]))}`,
    );
    await system.stop();
    data.remove();
  }
}
