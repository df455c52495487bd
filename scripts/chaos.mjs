// npm run chaos: the chaos suite's long form. Starts the whole system (nats-server and every built
// service as local processes on free ports, in a temporary data dir), runs a steady mixed load of
// virtual users through the gateway over gRPC (h2c), SIGKILLs and restarts every process in turn,
// round after round, then checks that no acknowledged write was lost and no event effect lost or
// doubled, and prints the table: fault, failed client calls, recovery time, lost, doubled.
//
//   npm run chaos                                  (2 rounds, 6 users)
//   npm run chaos -- --rounds 1
//   npm run chaos -- --duration 10m --concurrency 8 --down 3s --settle 5s
//   npm run chaos -- --faults tasks,nats --keep
//
// Exit status: 0 when nothing was lost or doubled and every process recovered, 1 otherwise,
// 2 on a bad flag. The run code is TypeScript in tests/chaos (shared with the test suite's short
// form); it is loaded through Vite's module runner, with the packages from their built dist (the
// npm script builds first).
import { parseArgs } from "node:util";
import { runnerImport } from "vite";

const USAGE = `usage: npm run chaos -- [options]
  --rounds N          rounds of faults, each process killed once per round (default 2)
  --duration T        keep running rounds until the load has run this long, e.g. 90s, 10m (default 0)
  --concurrency N     virtual users (default 6)
  --think T           mean pause of a user between calls (default 100ms)
  --down T            how long a killed process stays down before its restart (default 2s)
  --settle T          load after a recovery before the next fault (default 4s)
  --baseline T        load before the first fault (default 3s)
  --faults a,b,...    processes to kill, in order (default: nats and every built service)
  --check-timeout T   how long the delivery check may wait for consumers to settle (default 90s)
  --keep              keep the data dir (logs, SQLite files, JetStream) and print where it is
  --quiet             no progress lines`;

/** "1500", "1500ms", "90s", "10m" → ms. */
function duration(flag, value) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(value).trim());
  if (!m) usage(`--${flag}: "${value}" is not a duration (e.g. 500ms, 90s, 10m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "ms"];
  return Math.round(Number(m[1]) * unit);
}

function count(flag, value, min, max) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    usage(`--${flag}: "${value}" must be a whole number from ${min} to ${max}`);
  return n;
}

function usage(problem) {
  process.stderr.write(`${problem ? `chaos: ${problem}\n` : ""}${USAGE}\n`);
  process.exit(problem ? 2 : 0);
}

let args;
try {
  args = parseArgs({
    options: {
      rounds: { type: "string", default: "2" },
      duration: { type: "string", default: "0" },
      concurrency: { type: "string", default: "6" },
      think: { type: "string", default: "100ms" },
      down: { type: "string", default: "2s" },
      settle: { type: "string", default: "4s" },
      baseline: { type: "string", default: "3s" },
      faults: { type: "string" },
      "check-timeout": { type: "string", default: "90s" },
      keep: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
} catch (err) {
  usage(err.message);
}
if (args.help) usage();

const { module: chaos } = await runnerImport(new URL("../tests/chaos/chaos.ts", import.meta.url).pathname);
const { module: table } = await runnerImport(new URL("../tests/chaos/table.ts", import.meta.url).pathname);

const faults = args.faults
  ? args.faults
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)
  : undefined;
if (faults) {
  const known = chaos.defaultFaults();
  const unknown = faults.filter((f) => !known.includes(f));
  if (unknown.length > 0) usage(`--faults: no process named ${unknown.join(", ")} (have: ${known.join(", ")})`);
}

const options = {
  rounds: count("rounds", args.rounds, 1, 1000),
  durationMs: duration("duration", args.duration),
  concurrency: count("concurrency", args.concurrency, 1, 64),
  thinkMs: duration("think", args.think),
  downMs: duration("down", args.down),
  settleMs: duration("settle", args.settle),
  baselineMs: duration("baseline", args.baseline),
  checkTimeoutMs: duration("check-timeout", args["check-timeout"]),
  keepData: args.keep,
  ...(faults ? { faults } : {}),
  log: args.quiet ? undefined : (line) => process.stderr.write(`chaos: ${line}\n`),
};

const result = await chaos.runChaos(options);
process.stdout.write(`\n${table.formatChaosTable(result)}\n`);
process.stdout.write(`\n${result.calls} client calls in ${(result.durationMs / 1000).toFixed(0)} s\n`);
if (args.keep) process.stdout.write(`data kept in ${result.dataDir}\n`);

const unrecovered = result.rows.filter((r) => r.fault !== "none" && r.recoveryMs === undefined).map((r) => r.fault);
const problems = [
  ...(result.lost > 0 ? [`${result.lost} lost`] : []),
  ...(result.doubled > 0 ? [`${result.doubled} doubled`] : []),
  ...(unrecovered.length > 0 ? [`never recovered: ${unrecovered.join(", ")}`] : []),
  ...(result.deliveryError ? [`delivery check: ${result.deliveryError}`] : []),
  ...(result.unexpectedExits.length > 0 ? [`unexpected exits: ${result.unexpectedExits.join("; ")}`] : []),
];
if (problems.length > 0) {
  process.stdout.write(`\nFAILED: ${problems.join("; ")}\n`);
  process.exit(1);
}
process.stdout.write("\nOK: nothing lost, nothing doubled, every process recovered\n");
process.exit(0);
