// Records the call graph from the code: runs the suites that start the services as processes
// (the runner: e2e, faults, chaos) with TASKMESH_CALL_LOG set, so every service's grpc-js client
// logs each distinct outgoing call (packages/platform/src/rpc/call-log.ts), and writes the union
// to mesh/call-graph.json, which tests/mesh/call-graph.test.ts checks against the
// AuthorizationPolicies. `npm run mesh:calls` (builds first); extra arguments go to vitest.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const SUITES = ["tests/e2e", "tests/faults", "tests/chaos"];
const dir = mkdtempSync(join(tmpdir(), "taskmesh-calls-"));
const log = join(dir, "calls.jsonl");
let failed = false;
try {
  try {
    execFileSync(join(root, "node_modules/.bin/vitest"), ["run", ...SUITES, ...process.argv.slice(2)], {
      cwd: root,
      stdio: "inherit",
      env: { ...process.env, TASKMESH_CALL_LOG: log },
    });
  } catch {
    // A failing test still made its calls; the recording is kept, and the exit code says so.
    failed = true;
  }
  if (!existsSync(log)) throw new Error("no call was recorded: did the suites start any service?");
  const calls = [
    ...new Set(
      readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => l.trim() !== ""),
    ),
  ]
    .map((l) => JSON.parse(l))
    .sort((a, b) => `${a.caller} ${a.callee} ${a.method}`.localeCompare(`${b.caller} ${b.callee} ${b.method}`));
  const out = {
    comment:
      "Recorded by `npm run mesh:calls`: every distinct outgoing gRPC call the services made, at the client, while these suites ran. Do not edit.",
    suites: SUITES,
    calls,
  };
  writeFileSync(join(root, "mesh/call-graph.json"), `${JSON.stringify(out, null, 2)}\n`);
  console.log(`mesh/call-graph.json: ${calls.length} distinct calls${failed ? " (some tests failed)" : ""}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (failed) process.exitCode = 1;
