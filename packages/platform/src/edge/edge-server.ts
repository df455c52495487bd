import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { edgeCors } from "./edge-cors.js";
import { addHealth } from "./edge-health.js";
import { addReflection } from "./edge-reflection.js";
import { type BytesHandler, forwardedBytes } from "./forward-service.js";
import { grpcPassThrough, type PassThroughRoute } from "./grpc-pass-through.js";
import { OnePortServer, type OnePortServerOptions } from "./one-port-server.js";
import { type StaticFilesOptions, staticFiles } from "./static-files.js";
import { telemetryInterceptor } from "./telemetry-interceptor.js";

export interface EdgeService {
  service: DescService;
  // biome-ignore lint/suspicious/noExplicitAny: typed where it is built (e.g. forwardService(S, ...) is ServiceImpl<S>).
  impl: ServiceImpl<any>;
  /** Readiness of this service for grpc.health.v1 (e.g. its backend's health). Default: ready. */
  ready?: (signal: AbortSignal) => Promise<boolean>;
}

/**
 * A plain HTTP endpoint served on the edge's port besides the RPCs (HTTP/1.1 and h2c alike):
 * resolves true when it answered the request, false when the request is not its own.
 */
export type EdgeHttpRoute = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => Promise<boolean>;

export interface EdgeServerOptions {
  logger: Logger;
  /**
   * The public services, and only these: reflection lists them (plus grpc.health.v1.Health), and
   * any other path — an internal service included — answers 404, which gRPC clients read as
   * UNIMPLEMENTED. A function receives the drain signal (aborted when shutdown begins) for
   * `forwardService({ drainSignal })`.
   */
  services: readonly EdgeService[] | ((drainSignal: AbortSignal) => readonly EdgeService[]);
  /**
   * More grpc.health.v1 names beyond the public services, with their checks (e.g.
   * `dependency.users` reporting a circuit breaker). Listed by Health.List too. Default none.
   */
  healthChecks?: ReadonlyMap<string, (signal: AbortSignal) => Promise<boolean>>;
  /** Largest request message accepted, in bytes. Default 1 MiB, as the backends (RESOURCE_EXHAUSTED above). */
  readMaxBytes?: number;
  /**
   * More connect interceptors, run inside the telemetry one (so what they refuse is still traced
   * and counted), e.g. a rate limiter. Default none.
   */
  interceptors?: readonly Interceptor[];
  /**
   * The web client's static files, served at every path that is not an RPC (GET/HEAD). Default:
   * none, and `/` says that no client is served here.
   */
  web?: StaticFilesOptions;
  /** Plain HTTP endpoints (e.g. the calendar feed), tried in order before the web client's files. Default none. */
  httpRoutes?: readonly EdgeHttpRoute[];
  /**
   * Origins (e.g. `https://app.example.com`) whose scripts may call the edge cross-origin. Default
   * none: same origin only (no CORS headers are sent).
   */
  corsOrigins?: readonly string[];
  /** Slow-client timeouts and the per-address connection cap; each field's default is in OnePortServerOptions. */
  http?: OnePortServerOptions;
}

/**
 * The TCP peer of the connection a call came on (`socket.remoteAddress`, e.g. "127.0.0.1" or
 * "::ffff:10.0.0.7"; "" when unknown), in every edge call's context values: for limits per client
 * address. Behind a proxy it is the proxy's address.
 */
export const peerAddressKey = createContextKey<string>("", { description: "TCP peer address" });

/**
 * The edge: connect-node serving Connect (HTTP/1.1 and h2c), gRPC (h2c) and gRPC-Web on one
 * port, with server reflection and health. The handlers are whatever `services` bring —
 * typically `forwardService(...)` to a backend.
 */
export class EdgeServer {
  readonly #http: OnePortServer;
  readonly #shutdown = new AbortController();
  readonly #drain = new AbortController();
  readonly #logger: Logger;
  #stopped: Promise<void> | undefined;

  constructor(opts: EdgeServerOptions) {
    this.#logger = opts.logger;
    const services = typeof opts.services === "function" ? opts.services(this.#drain.signal) : opts.services;
    const readMaxBytes = opts.readMaxBytes ?? 1024 * 1024;
    // A SERVER span per call (parent of the backend calls), x-trace-id on the response, RED metrics.
    const interceptors = [telemetryInterceptor(), ...(opts.interceptors ?? [])];
    const contextValues = (req: { socket?: { remoteAddress?: string } | null }) =>
      createContextValues().set(peerAddressKey, req.socket?.remoteAddress ?? "");
    const handler = connectNodeAdapter({
      // Browsers and curl send Connect JSON without the Connect-Protocol-Version header.
      requireConnectProtocolHeader: false,
      readMaxBytes,
      // Aborted only when the grace period runs out: until then in-flight calls finish normally.
      shutdownSignal: this.#shutdown.signal,
      fallback: (req, res) => {
        // Not an RPC: maybe the web client (GET/HEAD); anything else is an unknown path.
        // connect-node's response type narrows `write`; it is the http/http2 response object.
        (async () => {
          for (const route of httpRoutes) if (await route(req, res as never)) return true;
          return web(req, res as never);
        })().then(
          (served) => served || unknownPath(req, res),
          () => unknownPath(req, res),
        );
      },
      interceptors,
      contextValues,
      routes: (router) => {
        for (const s of services) router.service(s.service, s.impl as never);
        addReflection(
          router,
          services.map((s) => s.service),
        );
        addHealth(router, {
          serving: () => !this.#drain.signal.aborted,
          services: new Map([
            ...services.map((s) => [s.service.typeName, s.ready ?? (async () => true)] as const),
            ...(opts.healthChecks ?? []),
          ]),
        });
      },
    });
    const web = staticFiles(opts.web ?? {});
    const httpRoutes = opts.httpRoutes ?? [];
    const cors = opts.corsOrigins?.length ? edgeCors(opts.corsOrigins) : undefined;
    // gRPC calls of forwarded unary methods skip connect-node: their bytes go straight to the backend.
    const passThrough = grpcPassThrough({
      routes: passThroughRoutes(services),
      interceptors,
      readMaxBytes,
      contextValues,
      shutdownSignal: this.#shutdown.signal,
    });
    const rpc: typeof handler = cors
      ? (req, res) => cors(req as never, res as never, () => handler(req as never, res as never))
      : handler;
    this.#http = new OnePortServer((req, res) => {
      if (!passThrough(req, res)) rpc(req as never, res as never);
    }, opts.http);
  }

  /** Binds host:port (0 picks a free port); resolves the bound port. */
  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    const bound = await this.#http.listen(port, host);
    this.#logger.info({ port: bound }, "edge listening (gRPC h2c, Connect, gRPC-Web)");
    return bound;
  }

  /**
   * Graceful shutdown: health turns NOT_SERVING, the port stops accepting, streams are told to
   * end, unary calls in flight finish for up to `graceMs`; then the rest is cancelled.
   */
  shutdown(graceMs = 10_000): Promise<void> {
    this.#stopped ??= (async () => {
      this.#drain.abort();
      await this.#http.close(graceMs, () =>
        this.#shutdown.abort(new ConnectError("gateway shutting down", Code.Unavailable)),
      );
    })();
    return this.#stopped;
  }
}

/** The methods `forwardService` also forwards as bytes, by request path. */
function passThroughRoutes(services: readonly EdgeService[]): Map<string, PassThroughRoute> {
  const routes = new Map<string, PassThroughRoute>();
  for (const { service, impl } of services) {
    const bytes = (impl as { [forwardedBytes]?: ReadonlyMap<DescMethod, BytesHandler> })[forwardedBytes];
    for (const [method, handler] of bytes ?? [])
      routes.set(`/${service.typeName}/${method.name}`, { service, method, handler });
  }
  return routes;
}

/**
 * Any path that is not a mounted method: gRPC and gRPC-Web callers get UNIMPLEMENTED as a
 * Trailers-Only response (what gRPC servers send for an unknown method), everyone else a 404
 * (the Connect protocol's HTTP status for unimplemented).
 */
function unknownPath(
  req: { url?: string; headers: Record<string, string | string[] | undefined> },
  res: UnknownPathResponse,
) {
  const type = String(req.headers["content-type"] ?? "");
  if (type.startsWith("application/grpc")) {
    res.writeHead(200, {
      "content-type": type,
      "grpc-status": "12",
      "grpc-message": encodeURIComponent(`unknown method ${req.url ?? ""}`),
    });
  } else {
    res.writeHead(404, { "content-type": "text/plain" });
  }
  res.end();
}

interface UnknownPathResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(): unknown;
}
