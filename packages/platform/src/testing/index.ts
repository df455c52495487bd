import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fresh temporary directory and a function that removes it. */
export function tempDir(prefix = "taskmesh-"): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A TCP port free on 127.0.0.1 right now (for processes that cannot listen on port 0 themselves). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export {
  NATS_INSTALL_HINT,
  type NatsServer,
  NatsServerNotFoundError,
  natsServerArgs,
  natsServerBinary,
  type StartNatsOptions,
  startNats,
  waitForNats,
} from "./nats.js";
export { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./otlp-receiver.js";
export { childrenDieWithParent, exited, findOnPath, signalChild, spawnTied, stopChild } from "./process.js";
export { type WaitForOptions, waitFor } from "./wait-for.js";
