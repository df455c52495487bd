import type { MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { create, type DescMessage, type DescMethod, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { instrumentGrpcJs } from "../telemetry/grpc-patch.js";
import { injectCallContext } from "../telemetry/grpc-propagation.js";
import { callRecorder } from "./call-log.js";
import { loadBalancingConfig, type OutlierDetectionOptions } from "./outlier-detection.js";

export interface CallOptions {
  /** Deadline for this call. Default: the client's defaultTimeoutMs. Capped by `parent`'s remaining time. */
  timeoutMs?: number;
  /** The inbound call this one serves: its remaining deadline caps ours, its cancellation cancels ours. */
  parent?: Pick<HandlerContext, "timeoutMs" | "signal">;
  signal?: AbortSignal;
  /** Extra request metadata (e.g. the caller's authorization). */
  headers?: Record<string, string>;
}

type UnaryFn<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: CallOptions,
) => Promise<MessageShape<O>>;
type StreamFn<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: CallOptions,
) => AsyncIterable<MessageShape<O>>;

/** A typed client: one method per RPC, named by its localName (e.g. `createTask`). */
export type GrpcClient<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends { methodKind: "unary"; input: infer I; output: infer O }
    ? I extends DescMessage
      ? O extends DescMessage
        ? UnaryFn<I, O>
        : never
      : never
    : S["method"][K] extends { methodKind: "server_streaming"; input: infer I; output: infer O }
      ? I extends DescMessage
        ? O extends DescMessage
          ? StreamFn<I, O>
          : never
        : never
      : never;
} & {
  close(): void;
  readonly channel: grpc.Client;
  /**
   * A unary call of `method` with the request already encoded, answering the response's bytes
   * undecoded: for a proxy that has no need to look inside (the edge's gRPC pass-through).
   * Same deadline, cancellation, metadata, retries and errors as the typed methods.
   */
  callBytes(method: DescMethod, request: Uint8Array, options?: CallOptions): Promise<Uint8Array>;
};

export interface GrpcClientOptions {
  /** host:port, or a grpc-js target such as "dns:tasks:50051" / "ipv4:127.0.0.1:1,127.0.0.1:2". */
  address: string;
  /** Deadline of a call that sets none. Default 5000 ms. */
  defaultTimeoutMs?: number;
  /**
   * Retry UNAVAILABLE with exponential backoff and jitter on methods that are safe to repeat:
   * those whose contract marks them NO_SIDE_EFFECTS or IDEMPOTENT, plus `retryableMethods`
   * (e.g. creates that always carry an idempotency key). Default true; set false in the mesh
   * (TASKMESH_MESH=istio) where Envoy retries, so attempts do not multiply.
   */
  retries?: boolean;
  /**
   * Eject a replica that keeps failing (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN,
   * DATA_LOSS; business errors such as NOT_FOUND never count) from the round-robin, when `address`
   * lists several endpoints (`ipv4:127.0.0.1:p1,127.0.0.1:p2`); see outlier-detection.ts.
   * Default: on with the defaults of OutlierDetectionOptions, except when `retries` is false, which
   * is how callers say the mesh (TASKMESH_MESH=istio) owns resilience: Envoy ejects there.
   */
  outlierDetection?: OutlierDetectionOptions | false;
  /** Method names (e.g. "CreateOccurrence") that are safe to retry although not marked idempotent. */
  retryableMethods?: readonly string[];
  /** Metadata added to every call (e.g. a service token). Called per call; should be cheap/cached. */
  metadata?: () => Promise<Record<string, string>> | Record<string, string>;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * The grpc-js service config: retry policy only on idempotent methods; round-robin over endpoints
 * with outlier detection.
 *
 * Retries (gRFC A6): only UNAVAILABLE (the request did not run, or ran nowhere that matters), at
 * most 4 attempts in all, within the call's one deadline. Before attempt n+1 grpc-js waits
 * min(0.05 s × 2^(n-1), 1 s) times a random factor in [0.8, 1.2] (its retrying-call.js jitter), so
 * 50, 100, 200 ms ±20 %; a retry picks again, so round_robin sends it to the next replica.
 */
export function serviceConfig(
  service: DescService,
  opts: Pick<GrpcClientOptions, "retries" | "retryableMethods" | "outlierDetection">,
) {
  const idempotent = service.methods.filter(
    (m) =>
      m.methodKind === "unary" &&
      (m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
        m.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT ||
        opts.retryableMethods?.includes(m.name)),
  );
  return {
    loadBalancingConfig: loadBalancingConfig(opts.outlierDetection ?? (opts.retries === false ? false : {})),
    methodConfig:
      opts.retries === false || idempotent.length === 0
        ? []
        : [
            {
              name: idempotent.map((m) => ({ service: service.typeName, method: m.name })),
              retryPolicy: {
                maxAttempts: 4,
                initialBackoff: "0.05s",
                maxBackoff: "1s",
                backoffMultiplier: 2,
                retryableStatusCodes: ["UNAVAILABLE"],
              },
            },
          ],
  };
}

/**
 * A typed grpc-js client over one long-lived channel (reused by every call), with a deadline
 * on every call and the service config above. Errors come back as ConnectError carrying the
 * server's code and message unchanged, so a caller (the gateway) can pass them through.
 */
export function createGrpcClient<S extends DescService>(service: S, opts: GrpcClientOptions): GrpcClient<S> {
  // Client spans come from the grpc-js instrumentation patching Client.prototype (see grpc-patch.ts)
  // when spans are exported; otherwise prepareCall puts the trace context on the call itself.
  instrumentGrpcJs();
  const channelOptions: grpc.ChannelOptions = {
    "grpc.service_config": JSON.stringify(serviceConfig(service, opts)),
    "grpc.enable_retries": opts.retries === false ? 0 : 1,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    ...opts.channelOptions,
  };
  const channel = new grpc.Client(opts.address, grpc.credentials.createInsecure(), channelOptions);
  const defaultTimeout = opts.defaultTimeoutMs ?? 5000;
  // TASKMESH_CALL_LOG (call-log.ts): a client over another's channel calls that channel's target.
  const record = callRecorder(opts.channelOptions?.channelOverride?.getTarget() ?? opts.address);
  const unary = async <T>(
    path: string,
    method: DescMethod,
    serialize: (m: T) => Buffer,
    deserialize: (b: Buffer) => unknown,
    request: T,
    o: CallOptions,
  ) => {
    record?.(path);
    const { metadata, deadline, signal } = await prepareCall(opts, method, o, defaultTimeout);
    return await new Promise((resolve, reject) => {
      const onAbort = () => call.cancel();
      const call = channel.makeUnaryRequest(
        path,
        serialize,
        deserialize,
        request,
        metadata,
        { deadline },
        (err, res) => {
          // A settled call has nothing to cancel: an abort later (the caller's context ending) runs no listener.
          signal?.removeEventListener("abort", onAbort);
          if (err) reject(fromGrpcError(err));
          else resolve(res);
        },
      );
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  };
  const paths = new Map(service.methods.map((m) => [m, `/${service.typeName}/${m.name}`]));
  const client: Record<string, unknown> = {
    close: () => channel.close(),
    channel,
    callBytes: (method: DescMethod, request: Uint8Array, o: CallOptions = {}) => {
      const path = paths.get(method);
      if (!path || method.methodKind !== "unary")
        return Promise.reject(
          new ConnectError(`${method.name} is not a unary method of ${service.typeName}`, Code.Internal),
        );
      return unary(path, method, asBuffer, asBuffer, request, o);
    },
  };
  for (const method of service.methods) {
    const path = paths.get(method) as string;
    const serialize = (m: MessageShape<DescMessage>) => asBuffer(toBinary(method.input, m));
    const deserialize = (b: Buffer) => fromBinary(method.output, b);
    if (method.methodKind === "unary") {
      client[method.localName] = (request: MessageInitShape<DescMessage>, o: CallOptions = {}) =>
        unary(path, method, serialize, deserialize, create(method.input, request), o);
    } else if (method.methodKind === "server_streaming") {
      client[method.localName] = (request: MessageInitShape<DescMessage>, o: CallOptions = {}) => {
        record?.(path);
        return serverStream(channel, path, serialize, deserialize, method, request, o, opts, defaultTimeout);
      };
    }
  }
  return client as GrpcClient<S>;
}

/** Bytes stay bytes (grpc-js frames a Buffer as it is). */
const asBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

async function* serverStream(
  channel: grpc.Client,
  path: string,
  serialize: (m: MessageShape<DescMessage>) => Buffer,
  deserialize: (b: Buffer) => MessageShape<DescMessage>,
  method: DescMethod,
  request: MessageInitShape<DescMessage>,
  o: CallOptions,
  opts: GrpcClientOptions,
  defaultTimeout: number,
): AsyncGenerator<MessageShape<DescMessage>> {
  // Streams are long-lived: no default deadline unless one is asked for or inherited.
  const { metadata, deadline, signal } = await prepareCall(
    opts,
    method,
    o,
    (o.timeoutMs ?? o.parent) ? defaultTimeout : Infinity,
  );
  const call = channel.makeServerStreamRequest(path, serialize, deserialize, create(method.input, request), metadata, {
    deadline,
  });
  const onAbort = () => call.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const message of call) yield message as MessageShape<DescMessage>;
  } catch (err) {
    throw fromGrpcError(err as grpc.ServiceError);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    call.cancel();
  }
}

async function prepareCall(opts: GrpcClientOptions, _method: DescMethod, o: CallOptions, defaultTimeout: number) {
  let timeout = o.timeoutMs ?? defaultTimeout;
  const remaining = o.parent?.timeoutMs();
  if (remaining !== undefined) timeout = Math.min(timeout, remaining);
  if (timeout <= 0) throw new ConnectError("deadline exceeded before the call was made", Code.DeadlineExceeded);
  const metadata = new grpc.Metadata();
  const extra = opts.metadata ? await opts.metadata() : {};
  for (const [k, v] of Object.entries({ ...extra, ...o.headers })) metadata.set(k, v);
  // traceparent of the active context, unless the instrumentation injects its client span's.
  injectCallContext(metadata);
  const signals = [o.signal, o.parent?.signal].filter((s): s is AbortSignal => s !== undefined);
  const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
  return { metadata, deadline: timeout === Infinity ? Infinity : Date.now() + timeout, signal };
}

/** grpc-js ServiceError → ConnectError with the same code and the server's message. */
export function fromGrpcError(err: grpc.ServiceError | Error): ConnectError {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== "number") return new ConnectError(err.message, Code.Unknown);
  const code = e.code === grpc.status.OK ? Code.Unknown : (e.code as number as Code);
  return new ConnectError(e.details ?? err.message, code, undefined, undefined, err);
}
