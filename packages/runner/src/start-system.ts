import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { natsServerArgs, natsServerBinary, SERVICE_NODE_FLAGS, waitForNats } from "@taskmesh/platform/process";
import { JWKS_PATH, type ServiceName, type ServiceTopology, TOPOLOGY } from "@taskmesh/platform/topology";
import { ManagedProcess } from "./managed-process.js";
import { assertPortsFree, distinctFreePorts } from "./ports.js";
import { waitServing } from "./wait-serving.js";

/** The repository root (this file is packages/runner/{src,dist}/start-system.*). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** Default NATS client port. */
export const NATS_PORT = 4222;

/**
 * Services that may run as several processes (`replicas`), and why the others may not.
 *
 * Replicas of a service share its one SQLite file (WAL: any number of processes on one host read
 * concurrently and take turns writing; busy_timeout makes a writer wait for the lock, and the
 * services' read-modify-write transactions are BEGIN IMMEDIATE so they wait rather than fail), so
 * every replica sees every write and any replica can answer any call, which is what round-robin
 * across them assumes. Each replica also runs the service's outbox relay and its consumers:
 * - Two relays cannot publish out of order: each publishes unpublished rows in `seq` order, one at
 *   a time, the next only after the PubAck of the previous; a row is either unpublished in a
 *   relay's snapshot (then published by that relay first) or marked, which happens only after its
 *   PubAck (so it is in the stream). Commits are serialized, so a visible row has every smaller seq
 *   visible too. Both relays may publish the same row; Nats-Msg-Id = event id makes JetStream drop
 *   the second copy (a stalled relay waking after the duplicate window would store one, which the
 *   consumers' inbox absorbs, as after a crash).
 * - Consumers share one durable consumer, so JetStream hands each event to one replica; the inbox
 *   row written in the effect's transaction makes a redelivery to the other replica a no-op.
 * - Timers (reminders) fire with `UPDATE … WHERE fired_at IS NULL` in the transaction that writes
 *   the event, so one replica fires each.
 * Not replicable: the gateway (the one public port; run a second system instead), users (its JWKS
 * HTTP port is one URL in every verifier's config, and both processes would resume the same
 * account-deletion sagas at start), notifications (its stream of new notifications is pushed from
 * the process that stored them, so a subscriber on the other replica would miss them).
 */
export const REPLICABLE: readonly ServiceName[] = ["tasks", "recurrence", "reminders", "analytics"];

export interface StartSystemOptions {
  /** SQLite files, `nats/` (JetStream store) and `logs/<name>.log`. Default `<repo>/.data`. */
  dataDir?: string;
  /** Port overrides per service. Default: TOPOLOGY's ports (or free ports with `freePorts`). */
  ports?: Partial<Record<ServiceName, { grpcPort?: number; httpPort?: number; metricsPort?: number }>>;
  /** NATS client port. Default 4222 (or a free port with `freePorts`). */
  natsPort?: number;
  /** Use free ports for everything not set in `ports`/`natsPort` (tests). Default false. */
  freePorts?: boolean;
  /**
   * Processes per service, e.g. `{ tasks: 2 }`: replica 1 gets the service's ports (gRPC and
   * metrics), the others free ports, all the same database (see REPLICABLE); callers get every replica as one grpc-js target
   * (`<NAME>_ADDR=ipv4:127.0.0.1:p1,127.0.0.1:p2`) and balance round_robin with outlier detection.
   * Replica n > 1 is the process named `<service>.<n>` (services, kill, restart, logs/<name>.log).
   * Default 1 each.
   */
  replicas?: Partial<Record<ServiceName, number>>;
  /** Which services to start. Default: every service with `built: true` in TOPOLOGY. */
  services?: readonly ServiceName[];
  /** LOG_LEVEL of every service. Default "info". */
  logLevel?: string;
  /** How long each process may take to be ready (SERVING / accepting). Default 30000 ms. */
  readyTimeoutMs?: number;
  /**
   * Extra environment for every service (e.g. TOKEN_TTL_SECONDS, OTEL_EXPORTER_OTLP_ENDPOINT). The
   * runner's own environment is passed on too, under these.
   */
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
  /** Called as each process becomes ready during start-up, with the time it took (progress for `npm start`). */
  onReady?: (name: string, ms: number) => void;
}

export interface Endpoints {
  /** The public edge: gRPC (h2c), Connect and gRPC-Web on one port, e.g. http://127.0.0.1:8080. */
  gateway: string;
  /** The users JWKS document over HTTP. */
  jwks: string;
  /** nats://127.0.0.1:<port> */
  nats: string;
  /**
   * Every service process's Prometheus endpoint (`http://127.0.0.1:<port>/metrics`), by process
   * name (replicas `tasks.2` included), as the process reported it at its latest start; a process
   * that reported none (OTEL_SDK_DISABLED=true) is absent.
   */
  metrics: Record<string, string>;
  /** host:port of every backend's gRPC server (gRPC only, h2c), by service name (its first replica). */
  grpc: Record<string, string>;
  /**
   * The grpc-js target of every backend, as its callers get it: host:port, or with replicas
   * `ipv4:127.0.0.1:p1,127.0.0.1:p2`.
   */
  targets: Record<string, string>;
}

export interface RunningService {
  /** The service this process runs (for a replica `tasks.2`: "tasks"). */
  readonly service: string;
  /** PID of the current process (changes on restart). */
  readonly pid: number;
  /** gRPC port. */
  readonly port: number;
  /** Extra HTTP port (users' JWKS), if any. */
  readonly httpPort?: number;
  /** Port of its Prometheus endpoint (METRICS_PORT); undefined for nats-server. */
  readonly metricsPort?: number;
  /**
   * Where this process said its telemetry goes, from the line every service writes to stderr at
   * start (`tasks: traces → …; metrics → …`, packages/platform/src/telemetry/register.ts): as of
   * its latest start; undefined when it wrote none (OTEL_SDK_DISABLED=true).
   */
  readonly telemetry: ReportedTelemetry | undefined;
  readonly logFile: string;
}

export interface ReportedTelemetry {
  /** `none` (not exported), or e.g. `OTLP http://127.0.0.1:4318/v1/traces`. */
  traces: string;
  /** `http://127.0.0.1:<port>/metrics`, or `off (set METRICS_PORT)`. */
  metrics: string;
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
  service: string;
  proc: ManagedProcess;
  port: number;
  httpPort?: number;
  metricsPort?: number;
  telemetry?: ReportedTelemetry;
  ready: () => Promise<void>;
}

/**
 * Starts nats-server (from PATH, JetStream stored under `<dataDir>/nats`), then every backend at
 * once (a service's extra replicas after its first), then the edge, each as a child process with
 * its environment; resolves once every one reports SERVING on grpc.health.v1.
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
  const replicas = replicaCounts(names, opts.replicas);
  const natsBinary = natsServerBinary();
  for (const name of names) {
    const main = join(root, "services", name, "dist", "main.js");
    if (!existsSync(main)) throw new Error(`${name} is not built (${main} is missing): run \`npx tsc -b\` first`);
  }

  const ports = await resolvePorts(names, replicas, opts);
  await assertPortsFree([
    { port: ports.nats, owner: "nats-server" },
    ...names.flatMap((n) => {
      const p = ports.services[n];
      return [
        ...p.grpcPorts.map((port, i) => ({ port, owner: `${replicaName(n, i + 1)} gRPC` })),
        ...(p.httpPort ? [{ port: p.httpPort, owner: `${n} HTTP` }] : []),
        ...p.metricsPorts.map((port, i) => ({ port, owner: `${replicaName(n, i + 1)} metrics` })),
      ];
    }),
  ]);
  // What callers of a service get: one address, or every replica for round_robin.
  const targetOf = (name: ServiceName) => {
    const grpcPorts = ports.services[name]?.grpcPorts ?? [TOPOLOGY[name].grpcPort];
    return grpcPorts.length === 1
      ? `127.0.0.1:${grpcPorts[0]}`
      : `ipv4:${grpcPorts.map((p) => `127.0.0.1:${p}`).join(",")}`;
  };

  const logDir = join(dataDir, "logs");
  const natsDir = join(dataDir, "nats");
  // Logs hold user ids, emails in errors and trace ids: owner-only, as the databases.
  mkdirSync(logDir, { recursive: true, mode: 0o700 });
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
    service: "nats",
    proc: natsProc,
    port: ports.nats,
    ready: () => waitForNats(ports.nats, { timeoutMs: readyTimeoutMs, gone: () => goneReason(natsProc, opts.signal) }),
  });

  for (const [name, replica] of names.flatMap((n) => range(replicas[n]).map((r) => [n, r] as const))) {
    const topo: ServiceTopology = TOPOLOGY[name];
    const p = ports.services[name];
    const grpcPort = p.grpcPorts[replica - 1] as number;
    const metricsPort = p.metricsPorts[replica - 1] as number;
    const procName = replicaName(name, replica);
    const env: Record<string, string | undefined> = {
      // The gateway serves the web client's build (npm start builds it; `/` says so when it is missing).
      ...(name === "gateway" ? { WEB_ROOT: join(root, "web", "dist") } : {}),
      ...process.env,
      HOST: "127.0.0.1",
      GRPC_PORT: String(grpcPort),
      // Prometheus `GET /metrics` of this process (packages/platform/src/telemetry).
      METRICS_PORT: String(metricsPort),
      TASKMESH_DATA_DIR: dataDir,
      DB_PATH: join(dataDir, `${name}.db`),
      NATS_URL: natsUrl,
      TASKMESH_SERVICE_SECRET: serviceSecret,
      TASKMESH_MESH: "none",
      LOG_LEVEL: opts.logLevel ?? "info",
      // Node 22.1+ keeps the compiled code of every module here and reuses it at the next start
      // (Node 20 ignores it). One directory for all: the services share most of node_modules.
      NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(dataDir, "compile-cache"),
      ...opts.env,
    };
    if (p.httpPort !== undefined) env.JWKS_PORT = String(p.httpPort);
    if (topo.jwks) env.JWKS_URL = jwksUrl;
    // Service discovery by name: <NAME>_ADDR for every service this one calls.
    for (const callee of topo.calls) env[`${callee.toUpperCase()}_ADDR`] = targetOf(callee as ServiceName);
    const proc = new ManagedProcess(
      {
        name: procName,
        command: process.execPath,
        args: [...SERVICE_NODE_FLAGS, join(root, "services", name, "dist", "main.js")],
        env,
        cwd: root,
        logFile: join(logDir, `${procName}.log`),
      },
      onUnexpectedExit,
    );
    entries.push({
      name: procName,
      service: name,
      proc,
      port: grpcPort,
      httpPort: p.httpPort,
      metricsPort,
      ready: () =>
        waitServing(`127.0.0.1:${grpcPort}`, {
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
      // Written before the service's first log line, so it is in the file once the process serves.
      if (entry.service !== "nats") entry.telemetry = reportedTelemetry(entry.proc.logSinceStart());
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

  // Rotate: the previous run's log becomes <name>.log.1 (the one before it is dropped), so a crash
  // can still be read after the next `npm start`; restarts within this run append.
  for (const entry of entries) rotateLog(entry.proc.spec.logFile);
  const timed = async (entry: Entry) => {
    opts.signal?.throwIfAborted();
    const began = performance.now();
    await startOne(entry);
    opts.onReady?.(entry.name, Math.round(performance.now() - began));
  };
  // NATS first; then every backend at once, since each needs only NATS to start (calls to other
  // services are made per request or per event, retried, and the users JWKS is fetched on the first
  // token), with a service's extra replicas after its first, which migrates the shared database;
  // the edge last, so it takes outside calls only once everything behind it is ready. One after the
  // other took ~15 s on 2 cores; the processes' start-up is mostly CPU, which runs in parallel.
  const isEdge = (e: Entry) => e.service !== "nats" && (TOPOLOGY[e.service as ServiceName] as ServiceTopology).edge;
  const byService = new Map<string, Entry[]>();
  for (const entry of entries.slice(1)) {
    if (isEdge(entry)) continue;
    byService.set(entry.service, [...(byService.get(entry.service) ?? []), entry]);
  }
  try {
    await timed(entries[0] as Entry); // nats-server
    const started = await Promise.allSettled(
      [...byService.values()].map(async (replicas) => {
        for (const entry of replicas) await timed(entry);
      }),
    );
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    for (const entry of entries.filter(isEdge)) await timed(entry);
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
      service: entry.service,
      get pid() {
        return entry.proc.pid;
      },
      port: entry.port,
      ...(entry.httpPort !== undefined ? { httpPort: entry.httpPort } : {}),
      ...(entry.metricsPort !== undefined ? { metricsPort: entry.metricsPort } : {}),
      get telemetry() {
        return entry.telemetry;
      },
      logFile: entry.proc.spec.logFile,
    };
  }
  // As each process reported it at its latest start (a restart may change its env).
  const metricsUrls = () => {
    const urls: Record<string, string> = {};
    for (const entry of entries) {
      const reported = entry.telemetry?.metrics;
      if (reported?.startsWith("http")) urls[entry.name] = reported;
    }
    return urls;
  };
  const grpc: Record<string, string> = {};
  const targets: Record<string, string> = {};
  for (const name of names) {
    grpc[name] = `127.0.0.1:${ports.services[name].grpcPorts[0]}`;
    targets[name] = targetOf(name);
  }
  const gatewayPort = ports.services.gateway?.grpcPorts[0] ?? TOPOLOGY.gateway.grpcPort;

  return {
    dataDir,
    endpoints: {
      gateway: `http://127.0.0.1:${gatewayPort}`,
      jwks: jwksUrl,
      nats: natsUrl,
      grpc,
      targets,
      get metrics() {
        return metricsUrls();
      },
    },
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

/** `<service>` for replica 1, `<service>.<n>` for the others. */
function replicaName(service: string, replica: number): string {
  return replica === 1 ? service : `${service}.${replica}`;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

/** Replicas per service to start, checked: a whole number from 1 to 9, more than 1 only where REPLICABLE. */
function replicaCounts(names: readonly ServiceName[], given: StartSystemOptions["replicas"] = {}) {
  const counts = {} as Record<ServiceName, number>;
  for (const [name, n] of Object.entries(given) as [ServiceName, number][]) {
    if (!(name in TOPOLOGY)) throw new Error(`replicas: no service named ${name}`);
    if (!Number.isInteger(n) || n < 1 || n > 9)
      throw new Error(`replicas: ${name}=${n} must be a whole number from 1 to 9`);
    if (n > 1 && !REPLICABLE.includes(name))
      throw new Error(
        `replicas: ${name} runs as one process only (replicable: ${REPLICABLE.join(", ")}; see REPLICABLE in packages/runner)`,
      );
    if (n > 1 && !names.includes(name)) throw new Error(`replicas: ${name} is not among the services started`);
  }
  for (const name of names) counts[name] = given[name] ?? 1;
  return counts;
}

async function resolvePorts(
  names: readonly ServiceName[],
  replicas: Record<ServiceName, number>,
  opts: StartSystemOptions,
) {
  // Replicas 2..n need a gRPC and a metrics port each.
  const extra = names.reduce((sum, n) => sum + (replicas[n] - 1) * 2, 0);
  // nats, and per service gRPC, HTTP and metrics.
  const free = await distinctFreePorts((opts.freePorts ? 1 + names.length * 3 : 0) + extra);
  const pick = (given: number | undefined, fallback: number | undefined) =>
    given ?? (opts.freePorts ? free.shift() : fallback);
  const services = {} as Record<ServiceName, { grpcPorts: number[]; httpPort?: number; metricsPorts: number[] }>;
  for (const name of names) {
    const topo: ServiceTopology = TOPOLOGY[name];
    const given = opts.ports?.[name];
    const grpcPort = pick(given?.grpcPort, topo.grpcPort) as number;
    const httpPort = topo.httpPort !== undefined ? pick(given?.httpPort, topo.httpPort) : undefined;
    const metricsPort = pick(given?.metricsPort, topo.metricsPort) as number;
    services[name] = {
      grpcPorts: [grpcPort],
      ...(httpPort !== undefined ? { httpPort } : {}),
      metricsPorts: [metricsPort],
    };
  }
  const nats = pick(opts.natsPort, NATS_PORT) as number;
  // Replicas 2..n always get free ports (callers find them in their <NAME>_ADDR; the metrics URL
  // is in endpoints.metrics), never one of the fixed ports above that happens to be free right now.
  const taken = new Set([
    nats,
    ...Object.values(services).flatMap((s) => [...s.grpcPorts, s.httpPort ?? 0, ...s.metricsPorts]),
  ]);
  const spare = free.filter((p) => !taken.has(p));
  while (spare.length < extra) {
    const p = (await distinctFreePorts(1))[0] as number;
    if (!taken.has(p) && !spare.includes(p)) spare.push(p);
  }
  for (const name of names)
    for (let i = 1; i < replicas[name]; i++) {
      services[name].grpcPorts.push(spare.shift() as number);
      services[name].metricsPorts.push(spare.shift() as number);
    }
  return { nats, services };
}

/**
 * The telemetry line a service writes to stderr at start (packages/platform/src/telemetry/register.ts):
 * `<service.name>: traces → <where>; metrics → <url or off>`. The last one in `log` wins.
 */
function rotateLog(file: string): void {
  if (existsSync(file) && statSync(file).size > 0) {
    renameSync(file, `${file}.1`);
    chmodSync(`${file}.1`, 0o600);
  }
  writeFileSync(file, "", { mode: 0o600 });
  chmodSync(file, 0o600); // also when the file was there already (an older run's 0644)
}

export function reportedTelemetry(log: string): ReportedTelemetry | undefined {
  const lines = [...log.matchAll(/^\S+: traces → (.+); metrics → (.+)$/gm)];
  const last = lines.at(-1);
  return last ? { traces: (last[1] as string).trim(), metrics: (last[2] as string).trim() } : undefined;
}

function goneReason(proc: ManagedProcess, signal?: AbortSignal): string | undefined {
  if (signal?.aborted) return "start-up was aborted";
  return proc.running ? undefined : `the process exited (${proc.exitStatus})`;
}
