import { type ChildProcess, execFile, spawn } from "node:child_process";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { tempDir, waitFor } from "@taskmesh/platform/testing";
import { afterAll, describe, expect, it } from "vitest";

const SCRIPT = join(import.meta.dirname, "..", "..", "scripts", "logs.mjs");
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const run = promisify(execFile);

function line(msg: string, extra: Record<string, unknown> = {}): string {
  return `${JSON.stringify({ level: 30, time: Date.parse("2026-12-07T10:00:00Z"), service: "tasks", msg, ...extra })}\n`;
}

describe("npm run logs", () => {
  const dir = tempDir("logs-script-");
  const logs = join(dir.path, "logs");
  mkdirSync(logs);
  writeFileSync(join(logs, "tasks.log"), line("task created", { trace_id: TRACE }) + line("another call"));
  writeFileSync(join(logs, "users.log"), line("user registered", { trace_id: TRACE, service: "users" }));
  writeFileSync(join(logs, "nats.log"), "[1] 2026/12/07 10:00:00.000000 [INF] Server is ready\n");
  let follower: ChildProcess | undefined;
  afterAll(() => {
    if (follower?.pid) process.kill(follower.pid, "SIGTERM");
    dir.remove();
  });

  it("prints every service's lines as readable text, prefixed by the service, raw lines as they are", async () => {
    const { stdout } = await run(process.execPath, [SCRIPT, "--data-dir", dir.path, "--no-follow"]);
    expect(stdout).toMatch(/^tasks +\| .*INFO.*task created/m);
    expect(stdout).toMatch(/^users +\| .*INFO.*user registered/m);
    expect(stdout).toMatch(/^nats +\| \[1\] .*Server is ready/m);
    expect(stdout).not.toContain('"msg"');
  });

  it("keeps only one trace's lines with --trace, and only the named services", async () => {
    const { stdout } = await run(process.execPath, [SCRIPT, "--data-dir", dir.path, "--no-follow", "--trace", TRACE]);
    expect(stdout).toContain("task created");
    expect(stdout).toContain("user registered");
    expect(stdout).not.toContain("another call");
    expect(stdout).not.toContain("Server is ready");
    const one = await run(process.execPath, [SCRIPT, "--data-dir", dir.path, "--no-follow", "users"]);
    expect(one.stdout).toContain("user registered");
    expect(one.stdout).not.toContain("task created");
  });

  it("refuses an unknown service or a malformed trace id with a message", async () => {
    await expect(run(process.execPath, [SCRIPT, "--data-dir", dir.path, "--no-follow", "nope"])).rejects.toMatchObject({
      stderr: expect.stringContaining("no log for nope (have: nats, tasks, users)"),
    });
    await expect(
      run(process.execPath, [SCRIPT, "--data-dir", dir.path, "--no-follow", "--trace", "xyz"]),
    ).rejects.toMatchObject({ stderr: expect.stringContaining("--trace takes a 32-hex-digit trace id") });
  });

  it("follows: a line written after it started is printed", async () => {
    let out = "";
    follower = spawn(process.execPath, [SCRIPT, "--data-dir", dir.path, "--lines", "1", "tasks"]);
    follower.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    // It prints the last line first: from then on it is following.
    await waitFor("the follower's first line", () => out.includes("another call"), { timeoutMs: 10_000 });
    appendFileSync(join(logs, "tasks.log"), line("written later"));
    await waitFor("the follower to print the new line", () => out.includes("written later"), {
      timeoutMs: 10_000,
      detail: () => `\n${out}`,
    });
    expect(out).not.toContain("task created");
  });
});
