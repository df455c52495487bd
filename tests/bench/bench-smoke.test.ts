// `npm run bench` in its tiny mode: the command runs end to end against the real system and its
// JSON has every row of the table, each with figures and a same-run baseline. The figures
// themselves are not asserted (a smoke run on a shared machine measures nothing worth keeping).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "@taskmesh/platform/testing";
import { REPO_ROOT } from "@taskmesh/runner";
import { describe, expect, it } from "vitest";

const SERVICES = ["users", "tasks", "recurrence", "reminders", "notifications", "analytics", "gateway"];
const EXPECTED = [
  "relay.drain",
  "relay.reconciling",
  ...["gettask", "listtasks"].flatMap((m) =>
    [1, 32].flatMap((c) => [
      `edge.grpc.${m}.c${c}`,
      `edge.connect.${m}.c${c}`,
      `edge.floor.${m}.c${c}`,
      `edge.floor-connect.${m}.c${c}`,
      `service.${m}.c${c}`,
    ]),
  ),
  ...[1, 32].flatMap((c) => [`write.gateway.c${c}`, `write.service.c${c}`]),
  "events.latency.100",
  "events.latency.500",
  ...[1, 32].flatMap((c) =>
    ["list", "search", "complete"].flatMap((k) => [`scale.${k}.c${c}`, `scale.users.${k}.c${c}`]),
  ),
  ...SERVICES.map((s) => `rss.${s}`),
  "rss.total",
  "startup",
];

interface Row {
  id: string;
  unit: string;
  value: { value: number };
  baseline: { value: number };
}

describe("npm run bench (tiny mode)", () => {
  it("writes a JSON report with every row, each a figure against a same-run baseline", async () => {
    const dir = tempDir("taskmesh-bench-smoke-");
    try {
      const out = join(dir.path, "bench.json");
      const stdout = await new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          [join(REPO_ROOT, "scripts/bench/bench.mjs"), "--tiny", "--out", out],
          { cwd: REPO_ROOT, timeout: 150_000, maxBuffer: 10e6 },
          (err, so, se) => (err ? reject(new Error(`${err.message}\n${se}`)) : resolve(so)),
        ),
      );
      const report = JSON.parse(readFileSync(out, "utf8")) as { mode: string; rows: Row[] };
      expect(report.mode).toBe("tiny");
      expect(report.rows.map((r) => r.id).sort()).toEqual([...EXPECTED].sort());
      for (const r of report.rows) {
        expect(typeof r.value.value, r.id).toBe("number");
        expect(typeof r.baseline.value, r.id).toBe("number");
        expect(r.unit, r.id).toMatch(/^(msg\/s|req\/s|ms|MiB)$/);
      }
      // The printed table names every row too.
      for (const id of EXPECTED) expect(stdout).toContain(id);
    } finally {
      dir.remove();
    }
  }, 180_000);
});
