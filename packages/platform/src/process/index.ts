/**
 * Running other programs from a Node process: what the runner behind `npm start` needs (and the
 * test helpers build on). Nothing here is test-only.
 */
export { freePort } from "./free-port.js";
export {
  NATS_INSTALL_HINT,
  NatsServerNotFoundError,
  natsServerArgs,
  natsServerBinary,
  waitForNats,
} from "./nats-server.js";
export { SERVICE_NODE_FLAGS } from "./node-flags.js";
export { childrenDieWithParent, exited, findOnPath, signalChild, spawnTied, stopChild } from "./process.js";
