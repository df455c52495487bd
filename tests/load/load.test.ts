// `npm run load` against the running system: the real CLI (packages/load, built) as a child
// process, three virtual users at 20 calls/s for 5 s through the gateway started by the runner
// (rate limits off, as the README advises for a load run), then its JSON report and its table.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { type LoadReport, MIX_METHODS } from "@taskmesh/load";
import { tempDir } from "@taskmesh/platform/testing";
import { REPO_ROOT } from "@taskmesh/runner";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2E, startE2E } from "../e2e/harness.js";

const CLI = join(REPO_ROOT, "packages/load/dist/cli.js");
const run = promisify(execFile);

/** Runs the CLI; resolves its exit code and output whatever the code. */
async function load(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { timeout: 40_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

describe("npm run load", () => {
  it("rejects a bad flag with a message naming it and exit status 2", async () => {
    const bad = await load(["--users", "3", "--rate", "fast", "--duration", "5s"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--rate: "fast" must be a number/);
    const missing = await load(["--users", "3", "--rate", "5"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--duration is required/);
    const protocol = await load(["--users", "1", "--rate", "5", "--duration", "1s", "--protocol", "http3"]);
    expect(protocol.code).toBe(2);
    expect(protocol.stderr).toMatch(/--protocol: "http3" must be grpc or connect/);
  });

  describe("against the running system", () => {
    let e2e: E2E;
    const dir = tempDir("taskmesh-load-");

    beforeAll(async () => {
      // A dashboard part's 800 ms deadline counts against the breaker its backend shares with every
      // forwarded call: on this shared 2-core machine a few slow parts open the tasks breaker and
      // ListTasks gets UNAVAILABLE (circuit open). The run checks the load, not that deadline.
      e2e = await startE2E({ env: { DASHBOARD_PART_TIMEOUT_MS: "5000" } });
    });
    afterAll(async () => {
      await e2e?.stop();
      dir.remove();
    });

    it("runs the whole mix at the target rate without errors and keeps every notification stream open", async () => {
      const json = join(dir.path, "load.json");
      const res = await load([
        ...["--users", "3", "--rate", "20", "--duration", "5s"],
        ...["--gateway", e2e.system.endpoints.gateway, "--json", json],
      ]);
      expect(res.code, res.stderr).toBe(0);
      const report = JSON.parse(readFileSync(json, "utf8")) as LoadReport;

      expect(report.usersReady).toBe(3);
      for (const method of MIX_METHODS) {
        const row = report.methods.find((m) => m.method === method);
        expect(row?.count, method).toBeGreaterThan(0);
        expect(row?.errors, `${method}: ${JSON.stringify(row?.errorMessages)}`).toEqual({});
        expect(row?.latencyMs.p99, method).toBeGreaterThan(0);
      }
      for (const setup of ["Register", "Login"]) {
        expect(report.methods.find((m) => m.method === setup)).toMatchObject({ phase: "setup", count: 3, ok: 3 });
      }
      // Open loop: the send rate follows the schedule, not the answers, so it is close to the target
      // even on a loaded machine (a late timer sends the calls it owes in a burst).
      expect(report.sent).toBe(100);
      expect(report.achievedRate).toBeGreaterThan(16);
      expect(report.achievedRate).toBeLessThan(24);
      expect(report.errors).toBe(0);
      expect(report.abandoned).toBe(0);
      // What is checked of the streams: each user's WatchNotifications stream was requested once,
      // never failed or ended, and was still open when the run stopped. The gateway sends a stream's
      // headers with its first message, and messages depend on reminders falling due during the run
      // (tasks due 2-5 s after their create), so receiving one is reported, not required.
      expect(report.streams).toMatchObject({ opened: 3, openAtEnd: 3, reconnects: 0, errors: {} });

      for (const method of ["Register (setup)", "Login (setup)", ...MIX_METHODS]) {
        expect(res.stdout).toMatch(new RegExp(`^${method.replace(/[()]/g, "\\$&")}\\s+\\d+\\s+\\d`, "m"));
      }
      expect(res.stdout).toMatch(/notification streams: 3 open at the end/);
      expect(res.stderr).toMatch(/sent \d+ ok \d+ errors \d+ rate [\d.]+\/s in-flight \d+/);
    }, 50_000);
  });
});
