import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./index.js";
import { exited, findOnPath, signalChild, spawnTied, stopChild } from "./process.js";

/** How to get nats-server, for every message that finds it missing. */
export const NATS_INSTALL_HINT =
  "nats-server was not found on PATH. Install it with `apt-get install -y nats-server` (Debian/Ubuntu), " +
  "or download a release from https://github.com/nats-io/nats-server/releases and put nats-server on PATH.";

export class NatsServerNotFoundError extends Error {
  constructor() {
    super(NATS_INSTALL_HINT);
    this.name = "NatsServerNotFoundError";
  }
}

/** The nats-server executable on PATH; throws NatsServerNotFoundError (with install instructions) if there is none. */
export function natsServerBinary(path = process.env.PATH): string {
  const binary = findOnPath("nats-server", path ?? "");
  if (!binary) throw new NatsServerNotFoundError();
  return binary;
}

/** nats-server arguments: JetStream with file storage under `storeDir`, loopback only. */
export function natsServerArgs(port: number, storeDir: string): string[] {
  return ["--jetstream", "--store_dir", storeDir, "--addr", "127.0.0.1", "--port", String(port), "--name", "taskmesh"];
}

/**
 * Resolves once a NATS server on 127.0.0.1:`port` greets a new connection with its INFO line
 * (nats-server starts JetStream before it accepts clients). Rejects as soon as `gone()` gives a
 * reason (the process exited), or after `timeoutMs`.
 */
export async function waitForNats(
  port: number,
  opts: { timeoutMs?: number; gone?: () => string | undefined; describeFailure?: () => string } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const why = () => (opts.describeFailure ? `\n${opts.describeFailure()}` : "");
  for (;;) {
    const gone = opts.gone?.();
    if (gone) throw new Error(`nats-server ${gone} before accepting connections${why()}`);
    if (await greets(port)) return;
    if (Date.now() > deadline)
      throw new Error(`nats-server did not accept connections on port ${port} in time${why()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let data = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on("data", (chunk) => {
      data += chunk.toString();
      if (data.startsWith("INFO ")) done(true);
    });
    socket.on("error", () => done(false));
    socket.on("close", () => done(false));
  });
}

export interface NatsServer {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** PID of the current nats-server process (changes on restart). */
  readonly pid: number;
  /** JetStream store directory (kept across kill/restart, removed by stop()). */
  readonly storeDir: string;
  /** SIGTERM (SIGKILL after a grace period), then removes a store directory this helper created. */
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL) to the server and waits until it has exited. The store is kept. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and store (stopping it first if it runs). */
  restart(): Promise<void>;
}

export interface StartNatsOptions {
  /** Client port. Default: a free port. */
  port?: number;
  /** JetStream store directory. Default: a fresh temporary directory, removed by stop(). */
  storeDir?: string;
  /** How long to wait for the server to accept connections. Default 10000 ms. */
  timeoutMs?: number;
}

/**
 * A real nats-server with JetStream (`-js -sd <dir> -a 127.0.0.1 -p <port>`) for tests, started
 * from PATH and tied to this process (it dies with it). Stop it with `stop()` in afterAll.
 */
export async function startNats(opts: StartNatsOptions = {}): Promise<NatsServer> {
  const binary = natsServerBinary();
  const port = opts.port ?? (await freePort());
  const ownsStore = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), "taskmesh-nats-"));
  let child: ChildProcess;
  let output = "";

  const launch = async () => {
    output = "";
    child = spawnTied(binary, natsServerArgs(port, storeDir), { stdio: ["ignore", "pipe", "pipe"] });
    const keepTail = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    };
    child.stdout?.on("data", keepTail);
    child.stderr?.on("data", keepTail);
    try {
      const gone = () =>
        child.exitCode !== null || child.signalCode !== null
          ? `exited (${child.exitCode ?? child.signalCode})`
          : undefined;
      await waitForNats(port, { timeoutMs: opts.timeoutMs, gone, describeFailure: () => output });
    } catch (err) {
      await stopChild(child, 1000);
      throw err;
    }
  };
  await launch();

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    get pid() {
      return child.pid ?? -1;
    },
    storeDir,
    async stop() {
      await stopChild(child);
      if (ownsStore) rmSync(storeDir, { recursive: true, force: true });
    },
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      const done = exited(child);
      signalChild(child, signal);
      await done;
    },
    async restart() {
      await stopChild(child);
      await launch();
    },
  };
}
