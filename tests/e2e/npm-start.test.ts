import { type ChildProcessWithoutNullStreams, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { tempDir } from "@taskmesh/platform/testing";
import { builtServices, REPO_ROOT } from "@taskmesh/runner";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `npm start` is `ensure-deps && tsc -b && node scripts/start.mjs`; the build has run before the
// tests (npm test), so the script runs with --no-build. Free ports, so a running `npm start`
// on the default ports does not get in the way.
const START = join(REPO_ROOT, "scripts/start.mjs");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function run(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("bash", ["-c", script], { cwd: REPO_ROOT, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const hasGrpcurl = (process.env.PATH ?? "").split(delimiter).some((d) => d && existsSync(join(d, "grpcurl")));

describe("npm start (scripts/start.mjs)", () => {
  const data = tempDir("taskmesh-start-");
  let child: ChildProcessWithoutNullStreams;
  let stdout = "";
  let stderr = "";
  let exit: Promise<number | null>;

  beforeAll(async () => {
    // As a user runs it first: no OTLP endpoint (the runner's own test covers one being set).
    const env = { ...process.env };
    delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
    child = spawn(process.execPath, [START, "--no-build", "--free-ports", "--data-dir", data.path], {
      cwd: REPO_ROOT,
      env,
      stdio: "pipe",
    });
    exit = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`npm start did not come up:\n${stdout}\n${stderr}`)), 45_000);
      const check = () => {
        if (stdout.includes("Ctrl-C stops everything.")) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on("data", check);
      void exit.then((code) => reject(new Error(`npm start exited (${code}):\n${stdout}\n${stderr}`)));
    });
  });
  afterAll(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
    data.remove();
  });

  it("prints every endpoint", () => {
    expect(stdout).toMatch(/gateway\s+http:\/\/127\.0\.0\.1:\d+/);
    expect(stdout).toMatch(/users\s+127\.0\.0\.1:\d+.*JWKS http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json/);
    expect(stdout).toMatch(/tasks\s+127\.0\.0\.1:\d+/);
    expect(stdout).toMatch(/nats\s+nats:\/\/127\.0\.0\.1:\d+/);
  });

  it("prints where traces go, and a metrics URL per service that answers with its RPC counters", async () => {
    const block = stdout.slice(stdout.indexOf("Telemetry"), stdout.indexOf("Try ("));
    expect(block).toContain(
      "traces   not exported (set OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to send OTLP to Jaeger/a collector)",
    );
    const urls = new Map(
      [...block.matchAll(/^\s+(?:metrics\s+)?([a-z][a-z.0-9]*)\s+(http:\/\/127\.0\.0\.1:\d+\/metrics)$/gm)].map((m) => [
        m[1] as string,
        m[2] as string,
      ]),
    );
    expect([...urls.keys()].sort()).toEqual([...builtServices()].sort());
    // A call through the gateway (Connect JSON, as curl sends it) shows on the edge's and on users' endpoint.
    const gateway = /gateway\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1];
    const res = await fetch(`${gateway}/taskmesh.users.v1.UserService/Register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: `metrics-${process.pid}@example.com`, password: "correct-horse-battery" }),
    });
    expect(res.status).toBe(200);
    for (const [name, system] of [
      ["gateway", "connect_rpc"],
      ["users", "grpc"],
    ] as const) {
      const text = await (await fetch(urls.get(name) ?? "")).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith("rpc_server_requests_total{") && l.includes('rpc_method="Register"'));
      expect(line, `${name}: ${urls.get(name)}`).toContain(`rpc_system="${system}"`);
      expect(Number(line?.split(" ").pop())).toBeGreaterThanOrEqual(1);
    }
  });

  it("prints example calls that work when pasted into a shell", async () => {
    const block = stdout.slice(stdout.indexOf("Try ("), stdout.indexOf("Ctrl-C stops everything."));
    // Each example is a "# title" line followed by the command; skip grpcurl where it is not installed.
    const lines = block
      .split("\n")
      .slice(1)
      .map((l) => l.trim());
    const commands: string[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? "";
      if (!line.startsWith("#")) continue;
      const command = lines[i + 1] ?? "";
      if (line.includes("(needs grpcurl)") && !hasGrpcurl) continue;
      commands.push(command);
    }
    expect(commands.length).toBeGreaterThanOrEqual(8);
    const { code, stdout: out, stderr: err } = await run(["set -euo pipefail", ...commands].join("\n"));
    expect(err).not.toMatch(/error|unavailable|unauthenticated/i);
    expect(code).toBe(0);
    expect(out).not.toMatch(/"code":/); // no Connect error body
    expect(out).toContain("taskmesh.users.v1.UserService");
    expect(out).toContain("taskmesh.tasks.v1.TaskService");
    expect(out).toContain("taskmesh.tasks.v1.TaskInternalService"); // the tasks backend's own reflection
    // Created over Connect JSON, then listed over Connect JSON and over gRPC.
    expect(out.match(/"title":\s*"Weekly review"/g)?.length).toBeGreaterThanOrEqual(3);
    expect(out).toContain("FREQ=WEEKLY;BYDAY=MO");
    expect(out).toContain("900s");
  });

  it("stops every process on Ctrl-C (SIGINT) and exits 0", async () => {
    const pids = [...stdout.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids.length).toBe(1 + builtServices().length); // nats-server and every built service
    for (const pid of pids) expect(alive(pid)).toBe(true);
    child.kill("SIGINT");
    expect(await exit).toBe(0);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(stderr).toContain("stopped");
    expect(stderr).not.toContain("exited unexpectedly");
  });
});

describe("npm start without nats-server", () => {
  it("exits non-zero and says how to install it", async () => {
    const path = (process.env.PATH ?? "")
      .split(delimiter)
      .filter((d) => d && !existsSync(join(d, "nats-server")))
      .join(delimiter);
    const data = tempDir("taskmesh-start-");
    try {
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [START, "--no-build", "--free-ports", "--data-dir", data.path],
          { cwd: REPO_ROOT, env: { ...process.env, PATH: path }, timeout: 30_000 },
          (err, _out, stderr) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stderr }),
        );
      });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain("apt-get install -y nats-server");
      expect(result.stderr).toContain("github.com/nats-io/nats-server/releases");
    } finally {
      data.remove();
    }
  });
});
