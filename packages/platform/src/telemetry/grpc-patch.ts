import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * Makes sure `@opentelemetry/instrumentation-grpc` has patched grpc-js.
 *
 * The instrumentation hooks `require()` (require-in-the-middle). Our code is ESM: Node 20 loads a
 * CommonJS package imported from ESM through the ESM loader's CommonJS translator, which never
 * calls `Module.prototype.require`, so the hook never sees `@grpc/grpc-js` and nothing is patched
 * (checked on Node 20.20: `Server.prototype.register.__wrapped` stays undefined even when the
 * instrumentation is registered first). The alternative is the import-in-the-middle loader hook,
 * which must be registered with `node --import` before the app's module graph is linked.
 *
 * Requiring the package here returns the very same module object the ESM import got (one module
 * cache) and goes through require-in-the-middle, which patches its classes' prototypes
 * (`Server.prototype.register`, `Client.prototype.make*Request`) in place — so every grpc-js
 * server and client in the process is instrumented, whatever the import order. Without an enabled
 * instrumentation this is a plain cache hit. Called by `startTelemetry` and, because a server or
 * channel may be built before telemetry starts, by GrpcServer and createGrpcClient too.
 */
export function instrumentGrpcJs(): void {
  require("@grpc/grpc-js");
}

/** True when grpc-js's server and client are patched by the instrumentation (tests and diagnostics). */
export function grpcJsInstrumented(): boolean {
  const grpc = require("@grpc/grpc-js") as {
    Server: { prototype: { register: { __wrapped?: boolean } } };
    Client: { prototype: { makeUnaryRequest: { __wrapped?: boolean } } };
  };
  return grpc.Server.prototype.register.__wrapped === true && grpc.Client.prototype.makeUnaryRequest.__wrapped === true;
}
