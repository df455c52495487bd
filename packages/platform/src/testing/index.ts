import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fresh temporary directory and a function that removes it. */
export function tempDir(prefix = "taskmesh-"): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export { FAULT_ENV, type FaultDrill, parseFaultDrills } from "../events/fault-drill.js";
export {
  childrenDieWithParent,
  exited,
  findOnPath,
  freePort,
  NATS_INSTALL_HINT,
  NatsServerNotFoundError,
  natsServerArgs,
  natsServerBinary,
  signalChild,
  spawnTied,
  stopChild,
  waitForNats,
} from "../process/index.js";
export { InMemorySpanExporter } from "../telemetry/telemetry.js";
export { type NatsServer, type StartNatsOptions, startNats } from "./nats.js";
export { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./otlp-receiver.js";
export { type PushHit, pushDevice, startPushReceiver } from "./push-receiver.js";
export { stubService } from "./service-stub.js";
export { type WaitForOptions, waitFor } from "./wait-for.js";
