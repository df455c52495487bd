import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** The absolute path of `name` found on PATH, or undefined. */
export function findOnPath(name: string, path = process.env.PATH ?? ""): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

// setpriv (util-linux, present on every Debian/Ubuntu) sets PR_SET_PDEATHSIG and then execs the
// program, so the child keeps its PID and the kernel sends it SIGTERM if our process dies, even by
// SIGKILL (which no exit handler of ours can catch). Without setpriv, only our exit handlers stop it.
const SETPRIV = process.platform === "linux" ? findOnPath("setpriv", "/usr/bin:/bin:/usr/sbin:/sbin") : undefined;

/** True when children spawned by `spawnTied` die with their parent even if it is SIGKILLed. */
export const childrenDieWithParent = SETPRIV !== undefined;

/**
 * spawn() whose child receives SIGTERM when this process dies, however it dies (Linux with
 * setpriv). The child's PID is the program's own PID (setpriv execs it).
 */
export function spawnTied(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  if (SETPRIV) return spawn(SETPRIV, ["--pdeathsig", "SIGTERM", "--", command, ...args], options);
  return spawn(command, args, options);
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/**
 * Stops one child by its PID: SIGTERM, then SIGKILL if it has not exited within `graceMs`.
 * Resolves once it has exited.
 */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const done = exited(child);
  signalChild(child, "SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    done.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    signalChild(child, "SIGKILL");
    await done;
  }
}

/** Sends a signal to the child's PID, ignoring a child that is already gone. */
export function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}
