// The bench's helper servers (bare-server.mjs, floor-proxy.mjs), started one way for bench.mjs and
// the probes.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Starts scripts/bench/<script> with `env` over this process's environment (kept in `holder.proc`
 * to stop it) and resolves the port it prints as "ready <port>"; the floor proxy's "ready <port>
 * connect <port>" leaves both in `holder.ports`. Its stdin is a pipe whose end (this process
 * gone, even by a signal) stops it.
 */
export const spawnReady = (holder, script, env) =>
  new Promise((resolveP, reject) => {
    const p = spawn(process.execPath, [join(here, script)], {
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "inherit"],
    });
    holder.proc = p;
    p.once("exit", (code) => reject(new Error(`${script} exited (${code})`)));
    p.stdout.on("data", (b) => {
      const m = /ready (\d+)(?: connect (\d+))?/.exec(String(b));
      if (!m) return;
      holder.ports = m.slice(1).filter(Boolean).map(Number);
      resolveP(holder.ports[0]);
    });
  });
