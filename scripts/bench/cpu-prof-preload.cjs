// `node --cpu-prof` for processes started by the runner: Node refuses --cpu-prof in NODE_OPTIONS,
// so this file (NODE_OPTIONS=--require …, with BENCH_CPU_PROF_DIR set) starts the V8 profiler
// through node:inspector and writes <dir>/<service>-<pid>.cpuprofile when the process exits.
// The main-thread inspector session answers synchronously, so an 'exit' handler can still write.
const { Session } = require("node:inspector");
const { writeFileSync } = require("node:fs");
const { join, basename, dirname } = require("node:path");

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 1000 });
  session.post("Profiler.start");
  process.on("exit", () => {
    session.post("Profiler.stop", (err, res) => {
      if (err) return;
      const name = basename(dirname(dirname(process.argv[1] ?? "node")));
      writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
