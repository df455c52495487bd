import { connect } from "node:net";
import { findOnPath } from "./process.js";

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
