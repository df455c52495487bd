/**
 * What the edge (the gateway) uses on top of the services' API: the one-port Connect/gRPC-Web/gRPC
 * server, forwarding to backends, edge health and reflection.
 */
export { addHealth, type EdgeHealthOptions } from "./edge-health.js";
export { addReflection } from "./edge-reflection.js";
export {
  type EdgeHttpRoute,
  EdgeServer,
  type EdgeServerOptions,
  type EdgeService,
  peerAddressKey,
} from "./edge-server.js";
export {
  type BytesHandler,
  type ForwardOptions,
  forwardedBytes,
  forwardService,
  type InboundCall,
  REQUEST_ID_HEADER,
} from "./forward-service.js";
export { type GuardOptions, guardClient } from "./guarded-client.js";
export { OnePortServer, type OnePortServerOptions } from "./one-port-server.js";
export { type StaticFilesOptions, staticFiles } from "./static-files.js";
export { telemetryInterceptor } from "./telemetry-interceptor.js";
