import { once, setMaxListeners } from "node:events";
import { create, type DescMethod, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createHandlerContext,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { context } from "@opentelemetry/api";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { Logger } from "pino";
import { bearerToken, type Principal, principalKey } from "../auth/identity.js";
import type { ServiceTokens, UserTokenVerifier } from "../auth/tokens.js";
import { instrumentGrpcJs } from "../telemetry/grpc-patch.js";
import { startServerCallSpan } from "../telemetry/grpc-propagation.js";
import { recordRpc } from "../telemetry/metrics.js";
import { codeName, toRpcError } from "./errors.js";
import { addReflectionToServer, LazyReflection } from "./reflection.js";
import { validateRequest } from "./validation.js";

/**
 * Who may call a service:
 * - "user": a valid user JWT (authorization: Bearer) is required, except for the methods listed
 *   in `anonymous` (e.g. Register, Login);
 * - "internal": a valid service token is required (mesh-only services).
 */
export type Access = { kind: "user"; anonymous?: readonly string[] } | { kind: "internal" };

export interface ServiceRegistration {
  service: DescService;
  // biome-ignore lint/suspicious/noExplicitAny: the typed form is checked in `register()`.
  impl: ServiceImpl<any>;
  access: Access;
}

/** Pairs a service descriptor with handlers typed from it. */
export function register<S extends DescService>(service: S, impl: ServiceImpl<S>, access: Access): ServiceRegistration {
  return { service, impl, access };
}

export interface GrpcServerOptions {
  /** Service name for logs and health. */
  name: string;
  logger: Logger;
  services: ServiceRegistration[];
  /** Verifies user tokens; required when any service has user access. */
  userTokens?: UserTokenVerifier;
  /** Verifies service tokens; required when any service has internal access. */
  serviceTokens?: ServiceTokens;
  /** Dependencies checked for readiness (e.g. the database). Default: always ready. */
  readiness?: () => boolean | Promise<boolean>;
  /** How often readiness is re-evaluated (also on `checkReadiness()`). Default 2000 ms. */
  readinessIntervalMs?: number;
  /** Largest request accepted, in bytes. Default 1 MiB (grpc-js answers RESOURCE_EXHAUSTED above it). */
  maxReceiveMessageBytes?: number;
}

/** Health service name that reports liveness (the process is up and not shutting down). */
export const LIVENESS_SERVICE = "liveness";

/**
 * A grpc-js server that mounts handlers written once against the protobuf-es descriptors, with
 * identity from verified tokens, protovalidate on every request, one error mapping,
 * grpc.health.v1 (overall "" and per service = readiness; "liveness"), server reflection, and
 * graceful shutdown.
 *
 * Why grpc-js and not connect-node for backends: grpc-js answers an immediate error as a
 * Trailers-Only response, which grpc-js client retries and Envoy's `retryOn` need.
 */
export class GrpcServer {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  readonly #opts: GrpcServerOptions;
  readonly #shutdown = new AbortController();
  #readinessTimer: NodeJS.Timeout | undefined;
  #listening = false;
  #ready = false;

  constructor(opts: GrpcServerOptions) {
    this.#opts = opts;
    // Before addService: the grpc-js instrumentation wraps handlers in Server.prototype.register.
    instrumentGrpcJs();
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": opts.maxReceiveMessageBytes ?? 1024 * 1024,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.keepalive_min_time_ms": 10_000,
    } as grpc.ServerOptions);
    const statuses: Record<string, ServingStatus> = { "": "NOT_SERVING", [LIVENESS_SERVICE]: "SERVING" };
    for (const s of opts.services) statuses[s.service.typeName] = "NOT_SERVING";
    // Every call in flight listens on the shutdown signal: many at once is normal, not a leak.
    setMaxListeners(0, this.#shutdown.signal);
    this.health = new HealthImplementation(statuses);
    this.health.addToServer(this.server);
    for (const s of opts.services) this.#mount(s);
    addReflectionToServer(this.server, new LazyReflection(opts.services.map((s) => s.service)));
  }

  /** Binds host:port (port 0 picks a free one) and starts readiness checks. Resolves the bound port. */
  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    const bound = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.#listening = true;
    await this.checkReadiness();
    this.#readinessTimer = setInterval(() => void this.checkReadiness(), this.#opts.readinessIntervalMs ?? 2000);
    this.#readinessTimer.unref();
    this.#opts.logger.info({ port: bound }, "grpc server listening");
    return bound;
  }

  /** Aborted when shutdown begins; every call's context is linked to it while the call runs. */
  get shutdownSignal(): AbortSignal {
    return this.#shutdown.signal;
  }

  get ready(): boolean {
    return this.#ready;
  }

  /**
   * Graceful shutdown: report NOT_SERVING (so balancers and probes stop sending), end open
   * streams, let in-flight calls finish for up to `graceMs`, then cut what is left.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    clearInterval(this.#readinessTimer);
    this.#setAll("NOT_SERVING");
    this.health.setStatus(LIVENESS_SERVICE, "NOT_SERVING");
    this.#shutdown.abort(new ConnectError("server shutting down", Code.Unavailable));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Re-evaluates readiness now, for a dependency that says when it changes (the NATS link
   * connecting): otherwise a service is seen ready up to one interval after it is. A no-op
   * before listen() and once shutdown has begun.
   */
  async checkReadiness(): Promise<void> {
    if (!this.#listening || this.#shutdown.signal.aborted) return;
    let ready = false;
    try {
      ready = (await this.#opts.readiness?.()) ?? true;
    } catch (err) {
      this.#opts.logger.warn({ err }, "readiness check failed");
    }
    if (this.#shutdown.signal.aborted) return; // shutdown began while the check ran
    if (ready !== this.#ready) this.#opts.logger.info({ ready }, "readiness changed");
    this.#ready = ready;
    this.#setAll(ready ? "SERVING" : "NOT_SERVING");
  }

  #setAll(status: ServingStatus): void {
    this.health.setStatus("", status);
    for (const s of this.#opts.services) this.health.setStatus(s.service.typeName, status);
  }

  #mount(reg: ServiceRegistration): void {
    const definition: Record<string, grpc.MethodDefinition<Buffer, Uint8Array>> = {};
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const method of reg.service.methods) {
      const impl = reg.impl[method.localName] as ((req: unknown, ctx: HandlerContext) => unknown) | undefined;
      if (!impl) throw new Error(`${reg.service.typeName}.${method.name} has no handler`);
      const path = `/${reg.service.typeName}/${method.name}`;
      definition[method.name] = {
        path,
        requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
        responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
        // Requests stay bytes here and are parsed in the handler, so a malformed payload is
        // INVALID_ARGUMENT rather than grpc-js's INTERNAL for a deserializer that throws.
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (m: Uint8Array) => Buffer.from(m.buffer, m.byteOffset, m.byteLength),
        responseDeserialize: (b: Buffer) => b,
      };
      if (method.methodKind === "unary") handlers[method.name] = traced(path, this.#unary(reg, method, impl));
      else if (method.methodKind === "server_streaming")
        handlers[method.name] = traced(path, this.#serverStream(reg, method, impl));
      else throw new Error(`${method.methodKind} methods are not supported (${method.name})`);
    }
    this.server.addService(definition as grpc.ServiceDefinition, handlers);
  }

  /**
   * The handler context of one call. Its signal aborts on client cancel, deadline or server
   * shutdown. The caller `abort()`s it when the call is over: connect links it to the shared
   * shutdown signal with a listener (and arms a deadline timer) released only on abort. grpc-js
   * happens to emit 'cancelled' when a finished call's stream closes, which would release them
   * too; ending the context ourselves does not depend on that.
   */
  #context(
    reg: ServiceRegistration,
    method: DescMethod,
    call: grpc.ServerUnaryCall<Buffer, Uint8Array> | grpc.ServerWritableStream<Buffer, Uint8Array>,
  ) {
    const requestAbort = new AbortController();
    call.on("cancelled", () => requestAbort.abort(new ConnectError("cancelled by client", Code.Canceled)));
    const deadline = call.getDeadline();
    const timeoutMs = deadline === Infinity ? undefined : Math.max(0, Number(deadline) - Date.now());
    const header = new Headers();
    for (const [k, v] of Object.entries(call.metadata.getMap())) if (typeof v === "string") header.set(k, v);
    const values = createContextValues();
    return createHandlerContext({
      service: reg.service,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      url: `/${reg.service.typeName}/${method.name}`,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      shutdownSignal: this.#shutdown.signal,
      requestSignal: requestAbort.signal,
      requestHeader: header,
      contextValues: values,
    });
  }

  /** Authenticates the caller, then parses and validates the request. */
  async #admit(reg: ServiceRegistration, method: DescMethod, ctx: HandlerContext, body: Buffer): Promise<unknown> {
    ctx.values.set(principalKey, await this.#authenticate(reg.access, method, ctx.requestHeader));
    let request: unknown;
    try {
      request = fromBinary(method.input, body);
    } catch {
      throw new ConnectError(`request is not a valid ${method.input.typeName}`, Code.InvalidArgument);
    }
    await validateRequest(method.input, request as never);
    return request;
  }

  async #authenticate(access: Access, method: DescMethod, header: Headers): Promise<Principal> {
    const token = bearerToken(header);
    if (access.kind === "internal") {
      if (!this.#opts.serviceTokens) throw new Error("internal service mounted without serviceTokens");
      if (!token) throw new ConnectError("a service token is required", Code.Unauthenticated);
      return { kind: "service", name: await this.#opts.serviceTokens.verify(token) };
    }
    if (access.anonymous?.includes(method.localName) || access.anonymous?.includes(method.name)) {
      return { kind: "anonymous" };
    }
    if (!token) throw new ConnectError("authorization: Bearer <token> is required", Code.Unauthenticated);
    if (!this.#opts.userTokens) throw new Error("user service mounted without userTokens");
    return { kind: "user", userId: await this.#opts.userTokens.verify(token), token };
  }

  #fail(err: unknown, ctx: HandlerContext | undefined, method: DescMethod): grpc.StatusObject {
    const e = toRpcError(err, this.#opts.logger, ctx?.signal);
    if (e.code === Code.Internal || e.code === Code.Unknown)
      this.#opts.logger.error({ method: method.name, err }, "call failed");
    const metadata = new grpc.Metadata();
    return { code: e.code as number as grpc.status, details: e.rawMessage, metadata };
  }

  /** RED metrics: one request, its status, its duration (see telemetry/metrics.ts). */
  #record(reg: ServiceRegistration, method: DescMethod, code: string, started: number): void {
    recordRpc("grpc", reg.service.typeName, method.name, code, (performance.now() - started) / 1000);
  }

  #unary(reg: ServiceRegistration, method: DescMethod, impl: (req: unknown, ctx: HandlerContext) => unknown) {
    return (call: grpc.ServerUnaryCall<Buffer, Uint8Array>, callback: grpc.sendUnaryData<Uint8Array>) => {
      const started = performance.now();
      const ctx = this.#context(reg, method, call);
      return (async () => {
        const request = await this.#admit(reg, method, ctx, call.request);
        const response = await impl(request, ctx);
        return toBinary(method.output, create(method.output, response as never));
      })()
        .then(
          (bytes) => {
            this.#record(reg, method, "OK", started);
            callback(null, bytes);
          },
          (err) => {
            const status = this.#fail(err, ctx, method);
            this.#record(reg, method, grpcCodeName(status.code), started);
            callback(status);
          },
        )
        .finally(() => ctx.abort(CALL_OVER));
    };
  }

  #serverStream(reg: ServiceRegistration, method: DescMethod, impl: (req: unknown, ctx: HandlerContext) => unknown) {
    return (call: grpc.ServerWritableStream<Buffer, Uint8Array>) => {
      const started = performance.now();
      const ctx = this.#context(reg, method, call);
      return (async () => {
        const request = await this.#admit(reg, method, ctx, call.request);
        for await (const message of impl(request, ctx) as AsyncIterable<unknown>) {
          if (ctx.signal.aborted) break;
          if (!call.write(toBinary(method.output, create(method.output, message as never)))) await once(call, "drain");
        }
      })()
        .then(
          () => {
            this.#record(reg, method, call.cancelled ? "CANCELLED" : "OK", started);
            call.end();
          },
          (err) => {
            if (call.cancelled) {
              this.#record(reg, method, "CANCELLED", started);
              return;
            }
            const status = this.#fail(err, ctx, method);
            this.#record(reg, method, grpcCodeName(status.code), started);
            call.emit("error", status);
          },
        )
        .finally(() => ctx.abort(CALL_OVER));
    };
  }
}

/**
 * Runs a handler in a SERVER span continuing the caller's `traceparent` when grpc-js is not
 * instrumented (telemetry on, spans not exported: see telemetry/grpc-propagation.ts); the span ends
 * when the handler's promise settles. Otherwise (instrumented: the instrumentation wrapped the
 * handler already; or telemetry off) it just calls the handler.
 */
function traced<C extends { metadata: grpc.Metadata }, R extends unknown[]>(
  path: string,
  handler: (call: C, ...rest: R) => Promise<void>,
): (call: C, ...rest: R) => void {
  return (call, ...rest) => {
    const t = startServerCallSpan(path, call.metadata);
    if (!t) {
      void handler(call, ...rest);
      return;
    }
    void context.with(t.context, () => handler(call, ...rest).finally(() => t.span.end()));
  };
}

/** Abort reason of a context whose call has ended (releases its links to the shutdown signal). */
const CALL_OVER = new ConnectError("call completed", Code.Canceled);

function grpcCodeName(code: grpc.status): string {
  return codeName(code as number as Code);
}
