import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../process/free-port.js";
import { natsServerArgs, natsServerBinary, waitForNats } from "../process/nats-server.js";
import { exited, signalChild, spawnTied, stopChild } from "../process/process.js";

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
