// Fuzzes every public method through the gateway of a freshly started system (real processes, as
// `npm start` runs them, on free ports and a temporary data dir) and prints the summary: requests
// sent, status codes per method and per protocol, health afterwards, the storage check, and every
// offender with the seed and case index to replay it.
//
//   npm run fuzz                           300 cases, a random seed (printed)
//   npm run fuzz -- --count 5000           a long run
//   npm run fuzz -- --seed 123 --only 17   replay one case (several: --only 17,42)
//   npm run fuzz -- --concurrency 16 --json fuzz-report.json
//   npm run fuzz -- --cases 1000000        property-based (fast-check) instead: bodies generated
//                                          from the proto descriptors, failures shrunk and printed
//                                          (tests/fuzz/properties.test.ts; --seed repeats a run)
//
// It runs tests/fuzz/fuzz.test.ts with vitest (the same code and checks as in `npm test`, where
// FUZZ_COUNT defaults to 300), so the exit status is non-zero when a check fails.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      count: { type: "string", default: "300" },
      cases: { type: "string" },
      seed: { type: "string" },
      only: { type: "string" },
      concurrency: { type: "string", default: "8" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }));
} catch (err) {
  console.error(`fuzz: ${err.message}`);
  process.exit(2);
}
if (args.help) {
  console.log(
    "usage: npm run fuzz -- [--count N] [--seed S] [--only i,j] [--concurrency C] [--json report.json]\n" +
      "       npm run fuzz -- --cases N [--seed S]    (property-based, fast-check)",
  );
  process.exit(0);
}
for (const k of ["count", "cases", "seed", "concurrency"]) {
  if (args[k] !== undefined && !/^\d+$/.test(args[k])) {
    console.error(`fuzz: --${k} must be a non-negative integer, got ${JSON.stringify(args[k])}`);
    process.exit(2);
  }
}
if (args.only !== undefined && !/^\d+(,\d+)*$/.test(args.only)) {
  console.error(`fuzz: --only takes case indexes like 17 or 17,42, got ${JSON.stringify(args.only)}`);
  process.exit(2);
}

if (args.cases !== undefined) {
  const seed = args.seed ?? String(Math.floor(Math.random() * 0x7fffffff));
  console.log(
    `fuzz: property-based, ${args.cases} cases, seed ${seed} (repeat with --cases ${args.cases} --seed ${seed})`,
  );
  const vitestBin = join(root, "node_modules", ".bin", "vitest");
  const run = spawnSync(vitestBin, ["run", "tests/fuzz/properties.test.ts"], {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, FUZZ_CASES: args.cases, FUZZ_SEED: seed },
  });
  process.exit(run.status ?? 1);
}

const seed = args.seed ?? String(Math.floor(Math.random() * 0xffffffff));
const reportFile = args.json ? resolve(args.json) : join(tmpdir(), `taskmesh-fuzz-${process.pid}.json`);
rmSync(reportFile, { force: true });
console.log(
  `fuzz: seed ${seed}, ${args.only ? `cases ${args.only}` : `${args.count} cases`} (repeat with --seed ${seed})`,
);

const vitest = join(root, "node_modules", ".bin", "vitest");
const run = spawnSync(vitest, ["run", "tests/fuzz/fuzz.test.ts", "--silent"], {
  cwd: root,
  stdio: "inherit",
  env: {
    ...process.env,
    FUZZ_COUNT: args.count,
    FUZZ_SEED: seed,
    FUZZ_CONCURRENCY: args.concurrency,
    FUZZ_REPORT: reportFile,
    ...(args.only ? { FUZZ_ONLY: args.only } : {}),
  },
});

if (existsSync(reportFile)) {
  const report = JSON.parse(readFileSync(reportFile, "utf8"));
  console.log(`\n${report.text}`);
  if (args.json) console.log(`\nreport written to ${reportFile}`);
  else rmSync(reportFile, { force: true });
} else {
  console.error("fuzz: the run produced no report (it failed before or while fuzzing; see above)");
}
process.exit(run.status ?? 1);
