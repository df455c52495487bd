import { appendFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { TOPOLOGY } from "@taskmesh/platform";
import { freePort, spawnTied, startOtlpReceiver, tempDir } from "@taskmesh/platform/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  builtServices,
  REPO_ROOT,
  type RunningSystem,
  reportedTelemetry,
  startOrder,
  startSystem,
} from "./start-system.js";
import { formatTelemetry, OTLP_HINT } from "./telemetry-summary.js";

// A stand-in repository whose services/<name>/dist/main.js are tiny real gRPC servers built on the
// platform's GrpcServer (health included): the runner is tested on its own, not through the
// services other tests cover. Each records its environment and its start in the data dir.
// Telemetry starts as in a real main.ts (the same register module, which prints where traces and
// metrics go), under the service's name.
const PLATFORM = resolve(REPO_ROOT, "packages/platform/dist/index.js");
const TELEMETRY_REGISTER = resolve(REPO_ROOT, "packages/platform/dist/telemetry/register.js");
const fixtureMain = (name: string) => `
import { appendFileSync, writeFileSync } from "node:fs";
const name = ${JSON.stringify(name)};
process.env.OTEL_SERVICE_NAME = name;
await import(${JSON.stringify(TELEMETRY_REGISTER)});
const { GrpcServer, createLogger, runMain } = await import(${JSON.stringify(PLATFORM)});
if (process.env.FIXTURE_FAIL === name) {
  console.error(name + ": boom, cannot start");
  process.exit(3);
}
const dir = process.env.TASKMESH_DATA_DIR;
writeFileSync(dir + "/" + name + ".env.json", JSON.stringify(process.env));
writeFileSync(dir + "/port-" + process.env.GRPC_PORT + ".env.json", JSON.stringify(process.env));
appendFileSync(dir + "/order.txt", name + "\\n");
appendFileSync(dir + "/times.txt", "start " + process.env.GRPC_PORT + " " + Date.now() + "\\n");
runMain(name, async () => {
  const logger = createLogger(name);
  const server = new GrpcServer({ name, logger, services: [] });
  await server.listen(Number(process.env.GRPC_PORT));
  appendFileSync(dir + "/times.txt", "ready " + process.env.GRPC_PORT + " " + Date.now() + "\\n");
  return { running: { shutdown: () => server.shutdown(1000) }, logger };
});
`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function eventually(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const srv = createServer();
    srv.once("error", () => done(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => done(true)));
  });
}

describe("startSystem", () => {
  const fixture = tempDir("taskmesh-runner-root-");
  const root = fixture.path;
  let data: ReturnType<typeof tempDir>;
  let system: RunningSystem | undefined;

  beforeAll(() => {
    for (const name of Object.keys(TOPOLOGY)) {
      mkdirSync(join(root, "services", name, "dist"), { recursive: true });
      writeFileSync(join(root, "services", name, "dist", "main.js"), fixtureMain(name));
    }
  });
  afterAll(() => fixture.remove());
  afterEach(async () => {
    await system?.stop();
    system = undefined;
    data?.remove();
  });
  const start = (extra: Parameters<typeof startSystem>[0] = {}) => {
    data = tempDir("taskmesh-runner-data-");
    return startSystem({ root, dataDir: data.path, freePorts: true, logLevel: "warn", ...extra });
  };
  const envOf = (name: string): Record<string, string> =>
    JSON.parse(readFileSync(join(data.path, `${name}.env.json`), "utf8"));
  const envOfPort = (port: number | undefined): Record<string, string> =>
    JSON.parse(readFileSync(join(data.path, `port-${port}.env.json`), "utf8"));
  /** When each process (by gRPC port) started and listened, ms since the epoch, as it wrote them. */
  const timesOf = () => {
    const t = { start: new Map<number, number>(), ready: new Map<number, number>() };
    for (const line of readFileSync(join(data.path, "times.txt"), "utf8").trim().split("\n")) {
      const [what, port, at] = line.split(" ");
      t[what as "start" | "ready"].set(Number(port), Number(at));
    }
    return t;
  };

  it("starts nats-server and every built service, dependencies first, each with its environment", async () => {
    system = await start();
    const order = readFileSync(join(data.path, "order.txt"), "utf8").trim().split("\n");
    // Every built service (the list grows as services are built); the backends start together
    // (each needs only NATS), the edge only once every one of them is ready.
    expect([...order].sort()).toEqual([...builtServices()].sort());
    const { services, endpoints } = system;
    expect(Object.keys(services)).toEqual(["nats", ...startOrder(builtServices())]);
    const times = timesOf();
    const gatewayStart = times.start.get(services.gateway?.port ?? -1) ?? 0;
    for (const [name, s] of Object.entries(services)) {
      if (name === "nats" || name === "gateway") continue;
      expect(times.ready.get(s.port), name).toBeLessThanOrEqual(gatewayStart);
    }
    for (const s of Object.values(services)) expect(alive(s.pid)).toBe(true);

    const users = envOf("users");
    const tasks = envOf("tasks");
    const gateway = envOf("gateway");
    expect(users.GRPC_PORT).toBe(String(services.users?.port));
    expect(users.JWKS_PORT).toBe(String(services.users?.httpPort));
    expect(users.DB_PATH).toBe(join(data.path, "users.db"));
    expect(tasks.JWKS_URL).toBe(`http://127.0.0.1:${services.users?.httpPort}/.well-known/jwks.json`);
    expect(gateway.USERS_ADDR).toBe(`127.0.0.1:${services.users?.port}`);
    expect(gateway.TASKS_ADDR).toBe(`127.0.0.1:${services.tasks?.port}`);
    expect(gateway.GRPC_PORT).toBe(String(services.gateway?.port));
    for (const env of [users, tasks, gateway]) {
      expect(env.NATS_URL).toBe(`nats://127.0.0.1:${services.nats?.port}`);
      expect(env.TASKMESH_SERVICE_SECRET).toBe(system.serviceSecret);
      expect(env.TASKMESH_DATA_DIR).toBe(data.path);
      expect(env.LOG_LEVEL).toBe("warn");
    }
    expect(system.serviceSecret.length).toBeGreaterThanOrEqual(32);
    expect(endpoints.gateway).toBe(`http://127.0.0.1:${services.gateway?.port}`);
    expect(endpoints.grpc.tasks).toBe(`127.0.0.1:${services.tasks?.port}`);
    // JetStream's store lives under the data dir.
    expect(readFileSync(join(data.path, "logs", "nats.log"), "utf8")).toContain(join(data.path, "nats"));
  });

  it("keeps the previous run's logs as <name>.log.1 instead of truncating them, all owner-only", async () => {
    system = await start();
    const dir = data.path;
    await system.stop();
    const log = join(dir, "logs", "gateway.log");
    appendFileSync(log, "marker of the first run\n");
    system = await startSystem({ root, dataDir: dir, freePorts: true, logLevel: "warn" });
    expect(readFileSync(`${log}.1`, "utf8")).toContain("marker of the first run");
    expect(readFileSync(log, "utf8")).not.toContain("marker of the first run");
    const mode = (f: string) => (statSync(f).mode & 0o777).toString(8);
    expect(mode(join(dir, "logs"))).toBe("700");
    for (const f of [log, `${log}.1`, join(dir, "logs", "nats.log")]) expect([f, mode(f)]).toEqual([f, "600"]);
  }, 90_000); // two starts

  it("gives every process a metrics port of its own and lists the endpoint each reports", async () => {
    system = await start();
    const { services, endpoints } = system;
    const procs = Object.entries(services).filter(([name]) => name !== "nats");
    const metricsPorts = procs.map(([, s]) => s.metricsPort);
    const allPorts = [services.nats?.port, ...procs.flatMap(([, s]) => [s.port, s.httpPort, s.metricsPort])].filter(
      (p) => p !== undefined,
    );
    expect(new Set(allPorts).size).toBe(allPorts.length);
    expect(metricsPorts.every((p) => typeof p === "number" && p > 0)).toBe(true);
    expect(services.nats?.metricsPort).toBeUndefined();
    for (const [name, s] of procs) {
      expect(envOf(name).METRICS_PORT).toBe(String(s.metricsPort));
      // What the service itself wrote at start, not what the runner assumes.
      expect(s.telemetry).toEqual({ traces: "none", metrics: `http://127.0.0.1:${s.metricsPort}/metrics` });
      expect(endpoints.metrics[name]).toBe(`http://127.0.0.1:${s.metricsPort}/metrics`);
      const res = await fetch(endpoints.metrics[name] ?? "");
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    }
    const summary = formatTelemetry(system, ["gateway", "users"]);
    expect(summary.split("\n")).toEqual([
      `traces   not exported (${OTLP_HINT})`,
      `metrics  gateway        http://127.0.0.1:${services.gateway?.metricsPort}/metrics`,
      `         users          http://127.0.0.1:${services.users?.metricsPort}/metrics`,
    ]);
  });

  it("reports the OTLP endpoint the services export traces to when OTEL_EXPORTER_OTLP_ENDPOINT is set", async () => {
    const receiver = await startOtlpReceiver();
    try {
      system = await start({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url } });
      const traces = `OTLP ${receiver.url.replace(/\/+$/, "")}/v1/traces`;
      for (const [name, s] of Object.entries(system.services)) {
        if (name !== "nats") expect(s.telemetry?.traces, name).toBe(traces);
      }
      expect(formatTelemetry(system).split("\n")[0]).toBe(`traces   ${traces}`);
      // After a restart with another environment, the process's new report counts.
      await system.restart("tasks", { env: { OTEL_EXPORTER_OTLP_ENDPOINT: undefined } });
      expect(system.services.tasks?.telemetry?.traces).toBe("none");
      expect(formatTelemetry(system, ["gateway", "tasks"]).split("\n").slice(0, 2)).toEqual([
        `traces   gateway        ${traces}`,
        `         tasks          not exported (${OTLP_HINT})`,
      ]);
    } finally {
      await receiver.close();
    }
  });

  it("stop() ends every process it started, nats-server included", async () => {
    system = await start();
    const pids = Object.values(system.services).map((s) => s.pid);
    await system.stop();
    system = undefined;
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it("kill() and restart() replace one process, keeping its port", async () => {
    const exits: string[] = [];
    system = await start({ onUnexpectedExit: (name) => exits.push(name) });
    const before = system.services.tasks?.pid ?? -1;
    await system.kill("tasks");
    expect(alive(before)).toBe(false);
    await system.restart("tasks");
    const after = system.services.tasks?.pid ?? -1;
    expect(after).not.toBe(before);
    expect(alive(after)).toBe(true);
    expect(exits).toEqual([]); // asked-for exits are not reported
  });

  it("runs replicas of a service on ports of their own over one database, and gives callers all of them", async () => {
    system = await start({ replicas: { tasks: 2 } });
    const { services, endpoints } = system;
    const [one, two] = [services.tasks, services["tasks.2"]];
    expect(two?.service).toBe("tasks");
    expect(two?.port).not.toBe(one?.port);
    expect(alive(one?.pid ?? -1) && alive(two?.pid ?? -1)).toBe(true);
    expect(two?.logFile).toBe(join(data.path, "logs", "tasks.2.log"));
    expect(two?.metricsPort).not.toBe(one?.metricsPort);
    for (const s of [one, two]) {
      const env = envOfPort(s?.port);
      expect(env.GRPC_PORT).toBe(String(s?.port));
      expect(env.METRICS_PORT).toBe(String(s?.metricsPort));
      expect(env.DB_PATH).toBe(join(data.path, "tasks.db"));
    }
    // Each replica serves its own metrics, listed under its process name.
    expect(endpoints.metrics["tasks.2"]).toBe(`http://127.0.0.1:${two?.metricsPort}/metrics`);
    expect((await fetch(endpoints.metrics["tasks.2"] ?? "")).status).toBe(200);
    // One after the other: the second opens a database the first has migrated.
    const times = timesOf();
    expect(times.start.get(two?.port ?? -1)).toBeGreaterThanOrEqual(times.ready.get(one?.port ?? -1) ?? Infinity);
    // Every caller balances over both; a single-process service keeps its plain address.
    const target = `ipv4:127.0.0.1:${one?.port},127.0.0.1:${two?.port}`;
    expect(envOf("gateway").TASKS_ADDR).toBe(target);
    expect(envOf("recurrence").TASKS_ADDR).toBe(target);
    expect(envOf("gateway").USERS_ADDR).toBe(`127.0.0.1:${services.users?.port}`);
    expect(endpoints.targets.tasks).toBe(target);
    expect(endpoints.grpc.tasks).toBe(`127.0.0.1:${one?.port}`);
    // A replica is a process like any other.
    const before = two?.pid;
    await system.restart("tasks.2");
    expect(services["tasks.2"]?.pid).not.toBe(before);
    expect(alive(services["tasks.2"]?.pid ?? -1)).toBe(true);
  });

  it("refuses replicas of a service that must run as one process, and counts that are not whole numbers", async () => {
    data = tempDir("taskmesh-runner-data-");
    const refused = (replicas: Record<string, number>) =>
      startSystem({ root, dataDir: data.path, freePorts: true, replicas }).then(
        () => "started",
        (err: Error) => err.message,
      );
    expect(await refused({ gateway: 2 })).toMatch(/gateway runs as one process only/);
    expect(await refused({ users: 3 })).toMatch(/users runs as one process only/);
    expect(await refused({ tasks: 0 })).toMatch(/tasks=0 must be a whole number from 1 to 9/);
    expect(await refused({ tasks: 1.5 })).toMatch(/whole number/);
    expect(await refused({ nope: 2 })).toMatch(/no service named nope/);
  });

  it("reports a process that dies on its own", async () => {
    const exits: string[] = [];
    system = await start({ onUnexpectedExit: (name, status) => exits.push(`${name}: ${status}`) });
    process.kill(system.services.users?.pid ?? -1, "SIGKILL");
    await eventually(() => exits.length > 0);
    expect(exits).toEqual(["users: killed by SIGKILL"]);
  });

  it("names the service that did not come up, shows its log, and leaves nothing running", async () => {
    const natsPort = await freePort();
    const error = await start({ natsPort, env: { FIXTURE_FAIL: "tasks" } }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(/^tasks did not come up/);
    expect(error?.message).toContain("tasks: boom, cannot start");
    expect(await portFree(natsPort)).toBe(true);
  });

  it("refuses a port that is already taken, naming its owner", async () => {
    const blocker = createServer();
    const port = await new Promise<number>((r) =>
      blocker.listen(0, "127.0.0.1", () => r((blocker.address() as { port: number }).port)),
    );
    try {
      await expect(start({ ports: { gateway: { grpcPort: port } } })).rejects.toThrow(
        new RegExp(`port ${port} \\(gateway gRPC\\) is already in use`),
      );
    } finally {
      blocker.close();
    }
  });

  it("says how to install nats-server when it is not on PATH", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await expect(start()).rejects.toThrow(/apt-get install -y nats-server/);
    } finally {
      process.env.PATH = path;
    }
  });

  it("leaves no process behind when the runner itself is SIGKILLed", async () => {
    data = tempDir("taskmesh-runner-data-");
    const runner = resolve(REPO_ROOT, "packages/runner/dist/index.js");
    const script = `
      import { startSystem } from ${JSON.stringify(runner)};
      const s = await startSystem({ root: ${JSON.stringify(root)}, dataDir: ${JSON.stringify(data.path)}, freePorts: true, logLevel: "warn" });
      console.log(JSON.stringify(Object.values(s.services).map((x) => x.pid)));
      setInterval(() => {}, 1000);
    `;
    const child = spawnTied(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const pids = await new Promise<number[]>((done, fail) => {
        let out = "";
        child.stdout?.on("data", (d) => {
          out += d;
          if (out.includes("\n")) done(JSON.parse(out));
        });
        child.once("exit", (code) => fail(new Error(`runner exited early (${code})`)));
      });
      expect(pids).toHaveLength(1 + builtServices().length);
      for (const pid of pids) expect(alive(pid)).toBe(true);
      process.kill(child.pid ?? -1, "SIGKILL");
      await eventually(() => pids.every((pid) => !alive(pid)), 15_000);
    } finally {
      // A failed assertion above must not leave the runner (and so its children) behind.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});

describe("reportedTelemetry", () => {
  it("reads the last telemetry line a service wrote at start", () => {
    const log = [
      "tasks: traces → none; metrics → http://127.0.0.1:1/metrics",
      '{"level":30,"msg":"listening"}',
      "tasks: traces → OTLP http://collector:4318/v1/traces (json); metrics → off (set METRICS_PORT)",
    ].join("\n");
    expect(reportedTelemetry(log)).toEqual({
      traces: "OTLP http://collector:4318/v1/traces (json)",
      metrics: "off (set METRICS_PORT)",
    });
    expect(reportedTelemetry('{"level":30,"msg":"listening"}\n')).toBeUndefined();
  });
});

describe("TOPOLOGY", () => {
  it("gives every service a metrics port of its own, apart from every gRPC and HTTP port", () => {
    const topo = Object.values(TOPOLOGY) as { grpcPort: number; httpPort?: number; metricsPort: number }[];
    const ports = topo.flatMap((t) => [t.grpcPort, t.metricsPort, ...(t.httpPort !== undefined ? [t.httpPort] : [])]);
    expect(new Set(ports).size).toBe(ports.length);
    for (const t of topo) expect(t.metricsPort).toBeGreaterThan(1024);
  });
});

describe("startOrder", () => {
  it("puts every service after the services it calls and after users when it verifies tokens", () => {
    expect(startOrder(["gateway", "tasks", "users"])).toEqual(["users", "tasks", "gateway"]);
    expect(startOrder(["gateway", "tasks"])).toEqual(["tasks", "gateway"]);
  });

  it("starts the edge after every other service", () => {
    const order = startOrder(builtServices());
    expect(order.at(-1)).toBe("gateway");
  });
});
