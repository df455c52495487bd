// npm start: installs dependencies if missing and builds if needed (tsc -b is incremental; the web client when its sources changed), starts nats-server and every built service
// as local processes (see packages/runner), prints the endpoints, where traces and metrics go, and example calls, and on Ctrl-C
// (SIGINT) or SIGTERM stops everything (gateway first, nats-server last) and exits 0.
import { execFileSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const usage = `Usage: npm start [-- options]

  --data-dir <dir>    SQLite files, JetStream store (nats/) and logs (logs/<service>.log). Default: .data
  --port <port>       the gateway's port. Default: 8080
  --nats-port <port>  nats-server's client port. Default: 4222
  --free-ports        pick free ports for everything not given (to run beside another instance)
  --log-level <lvl>   services' LOG_LEVEL (fatal|error|warn|info|debug|trace). Default: info
  --replicas <s>=<n>  run n processes of service s on n ports over its one database; its callers
                      balance round_robin with outlier detection across them. Repeatable, or
                      comma-separated: --replicas tasks=2,analytics=2. Replicable: tasks,
                      recurrence, reminders, analytics. Default: 1 each
  --no-build          skip installing dependencies and \`tsc -b\`
  -h, --help`;

let args;
try {
  args = parseArgs({
    options: {
      "data-dir": { type: "string" },
      port: { type: "string" },
      "nats-port": { type: "string" },
      "free-ports": { type: "boolean" },
      "log-level": { type: "string" },
      replicas: { type: "string", multiple: true },
      "no-build": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  }).values;
} catch (err) {
  console.error(`taskmesh: ${err.message}\n\n${usage}`);
  process.exit(2);
}
if (args.help) {
  console.log(usage);
  process.exit(0);
}
const portArg = (name) => {
  const raw = args[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    console.error(`taskmesh: --${name} must be a port number (1-65535), got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
};
const gatewayPort = portArg("port");
const natsPort = portArg("nats-port");
// --replicas tasks=2 [--replicas analytics=2 | ,analytics=2]: checked again (service, range) by the runner.
const replicas = {};
for (const item of (args.replicas ?? []).flatMap((r) => r.split(","))) {
  const m = /^([a-z]+)=(\d+)$/.exec(item.trim());
  if (!m) {
    console.error(`taskmesh: --replicas takes <service>=<count>, e.g. tasks=2, got ${JSON.stringify(item)}`);
    process.exit(2);
  }
  replicas[m[1]] = Number(m[2]);
}

// nats-server before anything slow: a missing one should not be found after minutes of install and build.
const executable = (file) => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};
const onPath = (process.env.PATH ?? "")
  .split(delimiter)
  .filter(Boolean)
  .some((dir) => executable(join(dir, "nats-server")));
if (!onPath) {
  // Debian installs it in /usr/sbin, which a user's PATH may lack: say so rather than only "install it".
  const elsewhere = ["/usr/sbin", "/usr/local/sbin", "/sbin"].map((d) => join(d, "nats-server")).find(executable);
  console.error(`taskmesh: nats-server is not on your PATH.${
    elsewhere
      ? ` It is installed at ${elsewhere}: export PATH="$PATH:${dirname(elsewhere)}" and run npm start again.`
      : ""
  }${elsewhere ? " Or install it" : " Install it, then run npm start again"}:

  Debian/Ubuntu   sudo apt-get install -y nats-server
  macOS           brew install nats-server
  anywhere        download a release from https://github.com/nats-io/nats-server/releases
                  and put the nats-server binary on your PATH`);
  process.exit(1);
}

const began = performance.now();
const seconds = (since) => `${((performance.now() - since) / 1000).toFixed(1)} s`;
if (!args["no-build"]) {
  try {
    // Dependencies first (npm ci on a fresh clone; it says so), then the incremental build.
    execFileSync(process.execPath, [join(root, "scripts/ensure-deps.mjs")], { cwd: root, stdio: "inherit" });
    const building = performance.now();
    console.error("taskmesh: building (tsc -b)…");
    execFileSync(join(root, "node_modules/.bin/tsc"), ["-b"], { cwd: root, stdio: "inherit" });
    console.error(`taskmesh: built in ${seconds(building)}`);
    // The web client (web/dist, served by the gateway at /): Vite, only when a source is newer than the build.
    const { buildWebIfStale } = await import("@taskmesh/runner");
    const webBuilding = performance.now();
    if (buildWebIfStale(root, { quiet: true }))
      console.error(`taskmesh: built the web client (web/dist) in ${seconds(webBuilding)}`);
  } catch {
    console.error("taskmesh: the build failed (see above)");
    process.exit(1);
  }
}
console.error("taskmesh: starting nats-server and the services…");

// Imported after the build: the runner runs from its compiled dist.
const { exampleCalls, formatExampleCalls, formatTelemetry, startSystem } = await import("@taskmesh/runner");
const { TOPOLOGY } = await import("@taskmesh/platform/topology");

const startup = new AbortController();
let system;
let stopping = false;
const shutdown = async (signal) => {
  if (stopping) {
    console.error(`\ntaskmesh: ${signal} again, killing everything now`);
    process.exit(1); // the runner's exit handler SIGKILLs what is left
  }
  stopping = true;
  console.error(`\ntaskmesh: ${signal}, stopping…`);
  if (!system) {
    startup.abort(new Error(`${signal} during start-up`));
    return; // the start below rejects, after stopping what it had started
  }
  await system.stop();
  console.error("taskmesh: stopped");
  process.exit(0);
};
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));

const dataDir = args["data-dir"] ?? join(root, ".data");
try {
  system = await startSystem({
    dataDir,
    ports: gatewayPort ? { gateway: { grpcPort: gatewayPort } } : undefined,
    natsPort,
    freePorts: args["free-ports"] ?? false,
    logLevel: args["log-level"] ?? "info",
    replicas,
    signal: startup.signal,
    onReady: (name, ms) => console.error(`  ready  ${name.padEnd(16)}${(ms / 1000).toFixed(1)} s`),
  });
  console.error(`taskmesh: everything ready ${seconds(began)} after npm start`);
} catch (err) {
  if (stopping) {
    console.error("taskmesh: stopped");
    process.exit(0);
  }
  console.error(`taskmesh: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}

const describe = (name) => {
  if (name === "users") return `gRPC; JWKS ${endpoints.jwks}`;
  // A service that serves no API of its own (it works from events) still answers health and reflection.
  return TOPOLOGY[name]?.serves?.length === 0 ? "gRPC health and reflection (works from events)" : "gRPC";
};
const rel = (p) => relative(process.cwd(), p) || ".";
const { endpoints, services } = system;
const rows = [
  [
    "gateway",
    endpoints.gateway,
    "public edge: web client at /, gRPC (h2c), Connect (HTTP/1.1, h2c), gRPC-Web, reflection",
  ],
  ...Object.entries(services)
    .filter(([name, s]) => name !== "nats" && s.service !== "gateway")
    .map(([name, s]) => [
      name,
      `127.0.0.1:${s.port}`,
      name === s.service ? describe(name) : `replica of ${s.service} (same database; callers balance across them)`,
    ]),
  ["nats", endpoints.nats, `JetStream, store in ${rel(join(system.dataDir, "nats"))}`],
];
const pad = (s, n) => s + " ".repeat(Math.max(1, n - s.length));
// The URL a person opens comes first.
console.log(`\nOpen taskmesh in your browser: ${endpoints.gateway}/`);
console.log(
  `\ntaskmesh is running. Data: ${rel(system.dataDir)}  Logs: ${rel(join(system.dataDir, "logs"))}/<name>.log\n`,
);
for (const [name, addr, what] of rows) {
  console.log(`  ${pad(name, 14)}${pad(addr, 26)}${pad(`pid ${services[name]?.pid}`, 11)}${what}`);
}
// Where traces and metrics go, as each service reported it at start (README.md, "Observability").
console.log("\nTelemetry (README.md, Observability):\n");
console.log(
  formatTelemetry(
    system,
    rows.map(([name]) => name),
  )
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n"),
);
console.log(`\nTry (from ${rel(root)}):\n`);
console.log(
  formatExampleCalls(exampleCalls(endpoints))
    .split("\n")
    .map((l) => (l ? `  ${l}` : l))
    .join("\n"),
);
console.log("\nCtrl-C stops everything.");
