import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { JWKS_PATH, type ServiceName, type ServiceTopology, TOPOLOGY } from "@taskmesh/platform";
import { natsServerArgs, natsServerBinary, waitForNats } from "@taskmesh/platform/testing";
import { ManagedProcess } from "./managed-process.js";
import { assertPortsFree, distinctFreePorts } from "./ports.js";
import { waitServing } from "./wait-serving.js";

/** The repository root (this file is packages/runner/{src,dist}/start-system.*). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** Default NATS client port. */
export const NATS_PORT = 4222;

export interface StartSystemOptions {
  /** SQLite files, `nats/` (JetStream store) and `logs/<name>.log`. Default `<repo>/.data`. */
  dataDir?: string;
  /** Port overrides per service. Default: TOPOLOGY's ports (or free ports with `freePorts`). */
  ports?: Partial<Record<ServiceName, { grpcPort?: number; httpPort?: number }>>;
  /** NATS client port. Default 4222 (or a free port with `freePorts`). */
  natsPort?: number;
  /** Use free ports for everything not set in `ports`/`natsPort` (tests). Default false. */
  freePorts?: boolean;
  /** Which services to start. Default: every service with `built: true` in TOPOLOGY. */
  services?: readonly ServiceName[];
  /** LOG_LEVEL of every service. Default "info". */
  logLevel?: string;
  /** How long each process may take to be ready (SERVING / accepting). Default 30000 ms. */
  readyTimeoutMs?: number;
  /** Extra environment for every service (e.g. TOKEN_TTL_SECONDS). */
  env?: Record<string, string>;
  /** Where `services/<name>/dist/main.js` are. Default: this repository. */
  root?: string;
  /** Aborting it during start-up stops what has started and rejects. */
  signal?: AbortSignal;
  /**
   * Called when a process exits without being asked to (not by stop/kill/restart). Default:
   * prints the name, the exit status and the tail of its log to stderr.
   */
  onUnexpectedExit?: (name: string, status: string, logTail: string) => void;
}

export interface Endpoints {
  /** The public edge: gRPC (h2c), Connect and gRPC-Web on one port, e.g. http://127.0.0.1:8080. */
  gateway: string;
  /** The users JWKS document over HTTP. */
  jwks: string;
  /** nats://127.0.0.1:<port> */
  nats: string;
  /** host:port of every backend's gRPC server (gRPC only, h2c), by service name. */
  grpc: Record<string, string>;
}

export interface RunningService {
  /** PID of the current process (changes on restart). */
  readonly pid: number;
  /** gRPC port. */
  readonly port: number;
  /** Extra HTTP port (users' JWKS), if any. */
  readonly httpPort?: number;
  readonly logFile: string;
}

export interface RunningSystem {
  readonly dataDir: string;
  readonly endpoints: Endpoints;
  /** By service name, plus "nats". */
  readonly services: Readonly<Record<string, RunningService>>;
  /** The secret the services share for internal service tokens (random per run). */
  readonly serviceSecret: string;
  /** Stops every process by PID (gateway first, nats last): SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL) to one process ("nats" included) and waits until it has exited. */
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  /**
   * Starts one process again (stopping it first if it runs) with the same ports and data, and waits
   * until ready. `env` changes that process's environment from this start on (a value of
   * `undefined` removes the variable), e.g. to arm or disarm a fault drill (TASKMESH_FAULT).
   */
  restart(name: string, opts?: RestartOptions): Promise<void>;
}

export interface RestartOptions {
  /** Environment changes for this process, kept for its later restarts. Default: none. */
  env?: Record<string, string | undefined>;
}

interface Entry {
  name: string;
  proc: ManagedProcess;
  port: number;
  httpPort?: number;
  ready: () => Promise<void>;
}

/**
 * Starts nats-server (from PATH, JetStream stored under `<dataDir>/nats`) and then every service,
 * dependencies first, each as a child process with its environment; resolves once every one
 * reports SERVING on grpc.health.v1.
 *
 * Children are stopped by `stop()`, by a process 'exit' handler (SIGKILL), and on Linux by the
 * kernel when the runner dies in any way (PR_SET_PDEATHSIG via setpriv; see spawnTied). Signals
 * (Ctrl-C) are the caller's to handle: call `stop()`. Without setpriv, a SIGKILLed runner leaves
 * its children running.
 */
export async function startSystem(opts: StartSystemOptions = {}): Promise<RunningSystem> {
  const root = opts.root ?? REPO_ROOT;
  const dataDir = resolve(opts.dataDir ?? join(root, ".data"));
  const names = startOrder(opts.services ?? builtServices());
  const natsBinary = natsServerBinary();
  for (const name of names) {
    const main = join(root, "services", name, "dist", "main.js");
    if (!existsSync(main)) throw new Error(`${name} is not built (${main} is missing): run \`npx tsc -b\` first`);
  }

  const ports = await resolvePorts(names, opts);
  await assertPortsFree([
    { port: ports.nats, owner: "nats-server" },
    ...names.flatMap((n) => {
      const p = ports.services[n];
      return [
        { port: p.grpcPort, owner: `${n} gRPC` },
        ...(p.httpPort ? [{ port: p.httpPort, owner: `${n} HTTP` }] : []),
      ];
    }),
  ]);

  const logDir = join(dataDir, "logs");
  const natsDir = join(dataDir, "nats");
  mkdirSync(logDir, { recursive: true });
  mkdirSync(natsDir, { recursive: true });
  const serviceSecret = randomBytes(32).toString("base64url");
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const natsUrl = `nats://127.0.0.1:${ports.nats}`;
  const usersHttp = ports.services.users?.httpPort ?? TOPOLOGY.users.httpPort;
  const jwksUrl = `http://127.0.0.1:${usersHttp}${JWKS_PATH}`;

  let stopping = false;
  // A process that dies while being started is reported by the start's own error instead.
  const starting = new Set<string>();
  const onUnexpectedExit = (name: string) => {
    if (stopping || starting.has(name)) return;
    const entry = entries.find((e) => e.name === name);
    const report =
      opts.onUnexpectedExit ??
      ((n: string, status: string, tail: string) =>
        process.stderr.write(`taskmesh: ${n} exited unexpectedly (${status}); last lines of its log:\n${tail}\n`));
    if (entry) report(name, entry.proc.exitStatus, entry.proc.logTail());
  };

  const entries: Entry[] = [];
  const natsProc = new ManagedProcess(
    {
      name: "nats",
      command: natsBinary,
      args: natsServerArgs(ports.nats, natsDir),
      env: process.env,
      cwd: root,
      logFile: join(logDir, "nats.log"),
    },
    onUnexpectedExit,
  );
  entries.push({
    name: "nats",
    proc: natsProc,
    port: ports.nats,
    ready: () => waitForNats(ports.nats, { timeoutMs: readyTimeoutMs, gone: () => goneReason(natsProc, opts.signal) }),
  });

  for (const name of names) {
    const topo: ServiceTopology = TOPOLOGY[name];
    const p = ports.services[name];
    const env: Record<string, string | undefined> = {
      ...process.env,
      HOST: "127.0.0.1",
      GRPC_PORT: String(p.grpcPort),
      TASKMESH_DATA_DIR: dataDir,
      DB_PATH: join(dataDir, `${name}.db`),
      NATS_URL: natsUrl,
      TASKMESH_SERVICE_SECRET: serviceSecret,
      TASKMESH_MESH: "none",
      LOG_LEVEL: opts.logLevel ?? "info",
      ...opts.env,
    };
    if (p.httpPort !== undefined) env.JWKS_PORT = String(p.httpPort);
    if (topo.jwks) env.JWKS_URL = jwksUrl;
    // Service discovery by name: <NAME>_ADDR for every service this one calls.
    for (const callee of topo.calls) {
      const cp = ports.services[callee as ServiceName]?.grpcPort ?? TOPOLOGY[callee as ServiceName].grpcPort;
      env[`${callee.toUpperCase()}_ADDR`] = `127.0.0.1:${cp}`;
    }
    const proc = new ManagedProcess(
      {
        name,
        command: process.execPath,
        args: ["--enable-source-maps", join(root, "services", name, "dist", "main.js")],
        env,
        cwd: root,
        logFile: join(logDir, `${name}.log`),
      },
      onUnexpectedExit,
    );
    entries.push({
      name,
      proc,
      port: p.grpcPort,
      httpPort: p.httpPort,
      ready: () =>
        waitServing(`127.0.0.1:${p.grpcPort}`, {
          timeoutMs: readyTimeoutMs,
          gone: () => goneReason(proc, opts.signal),
        }),
    });
  }

  const startOne = async (entry: Entry) => {
    starting.add(entry.name);
    entry.proc.start();
    try {
      await entry.ready();
      starting.delete(entry.name);
    } catch (err) {
      starting.delete(entry.name);
      const why = err instanceof Error ? err.message : String(err);
      throw new Error(
        `${entry.name} did not come up on port ${entry.port}: ${why}\n` +
          `--- last lines of ${entry.proc.spec.logFile} ---\n${entry.proc.logTail()}`,
      );
    }
  };

  // Reverse start order: the edge stops taking calls before the backends, NATS goes last.
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopping = true;
    stopped ??= (async () => {
      for (const entry of [...entries].reverse()) await entry.proc.stop();
      process.off("exit", killAllNow);
    })();
    return stopped;
  };
  const killAllNow = () => {
    for (const entry of entries) entry.proc.killNow();
  };
  process.on("exit", killAllNow);

  // Truncate the logs of the previous run; restarts within this run append.
  for (const entry of entries) writeFileSync(entry.proc.spec.logFile, "");
  try {
    for (const entry of entries) {
      opts.signal?.throwIfAborted();
      await startOne(entry);
    }
    opts.signal?.throwIfAborted();
  } catch (err) {
    await stop();
    throw err;
  }

  const find = (name: string) => {
    const entry = entries.find((e) => e.name === name);
    if (!entry) throw new Error(`no process named ${name} (have: ${entries.map((e) => e.name).join(", ")})`);
    return entry;
  };
  const services: Record<string, RunningService> = {};
  for (const entry of entries) {
    services[entry.name] = {
      get pid() {
        return entry.proc.pid;
      },
      port: entry.port,
      ...(entry.httpPort !== undefined ? { httpPort: entry.httpPort } : {}),
      logFile: entry.proc.spec.logFile,
    };
  }
  const grpc: Record<string, string> = {};
  for (const name of names) grpc[name] = `127.0.0.1:${ports.services[name].grpcPort}`;
  const gatewayPort = ports.services.gateway?.grpcPort ?? TOPOLOGY.gateway.grpcPort;

  return {
    dataDir,
    endpoints: { gateway: `http://127.0.0.1:${gatewayPort}`, jwks: jwksUrl, nats: natsUrl, grpc },
    services,
    serviceSecret,
    stop,
    async kill(name, signal = "SIGKILL") {
      await find(name).proc.kill(signal);
    },
    async restart(name, restartOpts) {
      const entry = find(name);
      await entry.proc.stop();
      if (restartOpts?.env) {
        const env = { ...entry.proc.spec.env, ...restartOpts.env };
        for (const [k, v] of Object.entries(restartOpts.env)) if (v === undefined) delete env[k];
        entry.proc.spec.env = env;
      }
      await startOne(entry);
    },
  };
}

/** Services TOPOLOGY marks as built. */
export function builtServices(): ServiceName[] {
  return (Object.keys(TOPOLOGY) as ServiceName[]).filter((n) => TOPOLOGY[n].built);
}

/**
 * Dependencies first: every service after those it calls, and after users when it needs the
 * JWKS; edge services (the gateway) after all others.
 *
 * users is the root and waits for nobody: every token verifier needs its JWKS, while the calls it
 * makes itself (the account-deletion saga's purges in tasks and notifications) are retried until
 * the callee answers, so they do not order the start (and would otherwise close a cycle:
 * tasks needs users' JWKS, notifications calls users).
 */
export function startOrder(names: readonly ServiceName[]): ServiceName[] {
  const order: ServiceName[] = [];
  const visiting = new Set<string>();
  const visit = (name: ServiceName) => {
    if (order.includes(name) || !names.includes(name)) return;
    if (visiting.has(name)) throw new Error(`dependency cycle through ${name}`);
    visiting.add(name);
    const topo: ServiceTopology = TOPOLOGY[name];
    const deps = (name === "users" ? [] : [...topo.calls, ...(topo.jwks ? ["users"] : [])]) as ServiceName[];
    for (const dep of deps) if (dep !== name) visit(dep);
    visiting.delete(name);
    order.push(name);
  };
  // The edge last, so it takes outside calls only once everything behind it is up.
  const isEdge = (n: ServiceName) => (TOPOLOGY[n] as ServiceTopology).edge === true;
  for (const name of names) if (!isEdge(name)) visit(name);
  for (const name of names) visit(name);
  return order;
}

async function resolvePorts(names: readonly ServiceName[], opts: StartSystemOptions) {
  const free = opts.freePorts ? await distinctFreePorts(1 + names.length * 2) : [];
  const pick = (given: number | undefined, fallback: number | undefined) =>
    given ?? (opts.freePorts ? free.shift() : fallback);
  const services = {} as Record<ServiceName, { grpcPort: number; httpPort?: number }>;
  for (const name of names) {
    const topo: ServiceTopology = TOPOLOGY[name];
    const given = opts.ports?.[name];
    const grpcPort = pick(given?.grpcPort, topo.grpcPort) as number;
    const httpPort = topo.httpPort !== undefined ? pick(given?.httpPort, topo.httpPort) : undefined;
    services[name] = httpPort !== undefined ? { grpcPort, httpPort } : { grpcPort };
  }
  return { nats: pick(opts.natsPort, NATS_PORT) as number, services };
}

function goneReason(proc: ManagedProcess, signal?: AbortSignal): string | undefined {
  if (signal?.aborted) return "start-up was aborted";
  return proc.running ? undefined : `the process exited (${proc.exitStatus})`;
}
