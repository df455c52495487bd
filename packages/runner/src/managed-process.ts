import type { ChildProcess } from "node:child_process";
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { exited, signalChild, spawnTied, stopChild } from "@taskmesh/platform/process";

export interface ProcessSpec {
  name: string;
  command: string;
  args: readonly string[];
  env: Record<string, string | undefined>;
  cwd: string;
  /** stdout and stderr go here (appended), so a child never blocks on a pipe nobody reads. */
  logFile: string;
}

/**
 * One child of the runner: spawned tied to the runner (it gets SIGTERM if the runner dies, see
 * spawnTied), output to its log file, stopped by PID. Exits the runner did not ask for are reported.
 */
export class ManagedProcess {
  readonly spec: ProcessSpec;
  #child: ChildProcess | undefined;
  #expectExit = false;
  /** Size of the log file when the current process was spawned: where its output begins. */
  #logStart = 0;
  readonly #onUnexpectedExit: (name: string, code: number | null, signal: NodeJS.Signals | null) => void;

  constructor(
    spec: ProcessSpec,
    onUnexpectedExit: (name: string, code: number | null, signal: NodeJS.Signals | null) => void,
  ) {
    this.spec = spec;
    this.#onUnexpectedExit = onUnexpectedExit;
  }

  /** PID of the current process, or -1 before start. */
  get pid(): number {
    return this.#child?.pid ?? -1;
  }

  get running(): boolean {
    const c = this.#child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** Exit code or signal of the last process, for messages. */
  get exitStatus(): string {
    const c = this.#child;
    if (!c) return "not started";
    if (c.signalCode) return `killed by ${c.signalCode}`;
    if (c.exitCode !== null) return `exit code ${c.exitCode}`;
    return "running";
  }

  /** Spawns the process (after stop/kill, spawns a new one). */
  start(): void {
    if (this.running) throw new Error(`${this.spec.name} is already running (pid ${this.pid})`);
    const fd = openSync(this.spec.logFile, "a", 0o600);
    try {
      this.#logStart = fstatSync(fd).size;
      const child = spawnTied(this.spec.command, this.spec.args, {
        cwd: this.spec.cwd,
        env: this.spec.env,
        stdio: ["ignore", fd, fd],
        // Its own process group: a Ctrl-C in the terminal reaches only the runner, which then
        // stops the children in order (gateway first), each once, instead of all at the same time.
        detached: true,
      });
      this.#expectExit = false;
      this.#child = child;
      child.on("error", () => {
        // spawn failures surface as an exit below (and in the readiness wait); nothing to add here.
      });
      child.once("exit", (code, signal) => {
        if (!this.#expectExit && this.#child === child) this.#onUnexpectedExit(this.spec.name, code, signal);
      });
    } finally {
      closeSync(fd);
    }
  }

  /** SIGTERM by PID, SIGKILL after `graceMs`; resolves once the process has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.#child) return;
    this.#expectExit = true;
    await stopChild(this.#child, graceMs);
  }

  /** Sends `signal` by PID and waits until the process has exited (e.g. SIGKILL for crash tests). */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#expectExit = true;
    const done = exited(child);
    signalChild(child, signal);
    await done;
  }

  /** Synchronous last resort for process 'exit' handlers: SIGKILL if still running. */
  killNow(): void {
    if (this.#child && this.running) {
      this.#expectExit = true;
      signalChild(this.#child, "SIGKILL");
    }
  }

  /** What the current process has written to its log file so far (the file appends across restarts). */
  logSinceStart(): string {
    try {
      return readFileSync(this.spec.logFile).subarray(this.#logStart).toString("utf8");
    } catch {
      return "";
    }
  }

  /** The last `lines` lines of the log file. */
  logTail(lines = 30): string {
    try {
      const text = readFileSync(this.spec.logFile, "utf8").trimEnd();
      return text.split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}
