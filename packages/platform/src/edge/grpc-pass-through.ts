import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type Interceptor,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { BytesHandler, InboundCall } from "./forward-service.js";

export interface PassThroughRoute {
  service: DescService;
  method: DescMethod;
  handler: BytesHandler;
}

export interface PassThroughOptions {
  /** By request path, `/<package>.<Service>/<Method>`. */
  routes: ReadonlyMap<string, PassThroughRoute>;
  /** The edge's connect interceptors (telemetry, limits), run around each call as for connect's calls. */
  interceptors: readonly Interceptor[];
  /** Largest request message accepted, in bytes (RESOURCE_EXHAUSTED above), as connect's readMaxBytes. */
  readMaxBytes: number;
  contextValues: (req: Http2ServerRequest) => ContextValues;
  /** Aborted when the grace period of a shutdown runs out: calls still running are cancelled. */
  shutdownSignal: AbortSignal;
}

/** gRPC over HTTP/2 with protobuf messages; gRPC-Web and JSON codecs stay with connect. */
type Invoke = (req: UnaryRequest) => Promise<UnaryResponse>;
/** Where a request carries the innermost step of its call (its forwarding handler) to the shared chain. */
const RUN = Symbol("run");
type PassRequest = UnaryRequest & { [RUN]: () => Promise<UnaryResponse> };

const GRPC_CONTENT_TYPE = /^application\/grpc(?:\+proto)?$/i;
const HEADER_BYTES = 5;

/**
 * The edge's fast path for gRPC calls of forwarded unary methods: the request message's bytes go
 * to the backend and the backend's answer comes back as bytes, without connect-node's protocol
 * handling or decoding and re-encoding both messages at the edge. Measured (issue 11,
 * scripts/bench/hop-probe.mjs): that was most of the edge's CPU per call.
 *
 * What a call gets is what connect would do for it: the same interceptors (the SERVER span and
 * RED metrics, the rate limits) run around it with the same request headers and context values;
 * the handler is forwardService's (token verified here, deadline, policy, request id); errors are
 * sent as gRPC status trailers by connect's own `setTrailerStatus` (details and metadata such as
 * x-trace-id included). Anything else — gRPC-Web, Connect, compressed requests, streams, methods
 * without a bytes handler — returns false and goes to connect-node.
 *
 * The edge never looks inside the message: a malformed one is the backend's to refuse
 * (INVALID_ARGUMENT, as it does for any caller).
 */
export function grpcPassThrough(
  opts: PassThroughOptions,
): (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => boolean {
  // The interceptor chain, built once (not per call): its innermost step runs the request's own handler.
  const invoke = opts.interceptors.reduceRight<Invoke>(
    (next, i) => i(next as never) as Invoke,
    (req) => (req as PassRequest)[RUN](),
  );
  // Calls in flight, cancelled together when the shutdown's grace runs out (one listener, not one per call).
  const inFlight = new Set<AbortController>();
  opts.shutdownSignal.addEventListener(
    "abort",
    () => {
      for (const c of inFlight) c.abort(opts.shutdownSignal.reason);
    },
    { once: true },
  );
  return (req, res) => {
    if (req.httpVersionMajor !== 2 || req.method !== "POST") return false;
    const type = req.headers["content-type"];
    if (type === undefined || !GRPC_CONTENT_TYPE.test(type)) return false;
    const encoding = req.headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    const route = opts.routes.get(req.url ?? "");
    if (!route) return false;
    serve(route, req as Http2ServerRequest, res as Http2ServerResponse, type, opts, invoke, inFlight);
    return true;
  };
}

function serve(
  route: PassThroughRoute,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  contentType: string,
  opts: PassThroughOptions,
  invoke: Invoke,
  inFlight: Set<AbortController>,
): void {
  const started = performance.now();
  const responseHeader = new Headers();
  const abort = new AbortController();
  let settled = false;
  if (opts.shutdownSignal.aborted) abort.abort(opts.shutdownSignal.reason);
  inFlight.add(abort);
  // The caller hanging up (RST_STREAM) before the answer: cancel the backend call.
  req.once("close", () => {
    if (!settled) abort.abort(new ConnectError("the caller cancelled the call", Code.Canceled));
  });

  const answer = (message: Uint8Array | undefined, error: ConnectError | undefined, trailer?: Headers) => {
    if (settled) return;
    settled = true;
    inFlight.delete(abort);
    const stream = res.stream;
    if (stream.destroyed || stream.headersSent) return;
    if (error) {
      // Trailers-Only (the END_STREAM flag on the one header block is what tells a gRPC client):
      // status, message, details and the error's metadata with the response headers.
      stream.respond(
        {
          ...headerRecord(responseHeader),
          ...headerRecord(setTrailerStatus(new Headers(), error)),
          ":status": 200,
          "content-type": contentType,
        },
        { endStream: true },
      );
      return;
    }
    const body = message ?? new Uint8Array(0);
    const frame = Buffer.allocUnsafe(HEADER_BYTES + body.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(body.byteLength, 1);
    frame.set(body, HEADER_BYTES);
    // Sent on the stream's wantTrailers by the compat response, which listens for it already.
    res.addTrailers(headerRecord(setTrailerStatus(trailer ?? new Headers(), undefined)));
    stream.respond(
      { ...headerRecord(responseHeader), ":status": 200, "content-type": contentType },
      { waitForTrailers: true },
    );
    stream.end(frame);
  };
  const fail = (e: unknown) => answer(undefined, ConnectError.from(e));

  const { timeoutMs, error: timeoutError } = parseTimeout(
    (req.headers["grpc-timeout"] as string | undefined) ?? null,
    Number.MAX_SAFE_INTEGER,
  );
  if (timeoutError) {
    fail(timeoutError);
    return;
  }
  const values = opts.contextValues(req);
  const call: InboundCall = {
    requestHeader: requestHeaders(req),
    responseHeader,
    values,
    signal: abort.signal,
    timeoutMs: () => (timeoutMs === undefined ? undefined : timeoutMs - (performance.now() - started)),
  };

  // The body: one enveloped message, uncompressed, at most readMaxBytes.
  const chunks: Buffer[] = [];
  let received = 0;
  let refused = false;
  req.on("data", (chunk: Buffer) => {
    if (refused) return;
    received += chunk.length;
    if (received > HEADER_BYTES + opts.readMaxBytes) {
      refused = true;
      fail(
        new ConnectError(
          `message size is larger than configured readMaxBytes ${opts.readMaxBytes}`,
          Code.ResourceExhausted,
        ),
      );
      return;
    }
    chunks.push(chunk);
  });
  req.once("end", () => {
    if (refused || settled) return;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received);
    const message = unaryMessage(body, route.method.name);
    if (message instanceof ConnectError) {
      fail(message);
      return;
    }
    const request: PassRequest = {
      [RUN]: async () =>
        ({
          stream: false,
          service: route.service,
          method: route.method,
          header: responseHeader,
          trailer: new Headers(),
          message: await route.handler(message, call),
        }) as unknown as UnaryResponse,
      stream: false,
      service: route.service,
      method: route.method,
      requestMethod: "POST",
      url: req.url,
      signal: abort.signal,
      header: call.requestHeader,
      contextValues: values,
      // The interceptors of the edge do not read a forwarded method's message (Login's is read, and
      // Login is not passed through); bytes would not be what an interceptor expects anyway.
      message: undefined,
    } as unknown as PassRequest;
    invoke(request).then((r) => {
      // An interceptor may have added response headers (x-trace-id) to r.header: the same object, or its own.
      if (r.header !== responseHeader)
        r.header.forEach((v, k) => {
          responseHeader.set(k, v);
        });
      answer(r.message as unknown as Uint8Array, undefined, r.trailer);
    }, fail);
  });
}

/** The one message of a unary request body, or the error connect would answer for this body. */
function unaryMessage(body: Buffer, method: string): Uint8Array | ConnectError {
  if (body.length < HEADER_BYTES)
    return new ConnectError(`protocol error: missing input message for unary method ${method}`, Code.Unimplemented);
  if ((body[0] as number) & 1)
    return new ConnectError("received compressed envelope, but do not know how to decompress", Code.InvalidArgument);
  const length = body.readUInt32BE(1);
  if (body.length < HEADER_BYTES + length)
    return new ConnectError("protocol error: premature end of stream", Code.InvalidArgument);
  if (body.length > HEADER_BYTES + length)
    return new ConnectError(
      `protocol error: received extra input message for unary method ${method}`,
      Code.Unimplemented,
    );
  return body.subarray(HEADER_BYTES);
}

function requestHeaders(req: Http2ServerRequest): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.charCodeAt(0) === 58 /* ":" pseudo-header */ || v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) h.append(k, x);
    else h.append(k, v);
  }
  return h;
}

function headerRecord(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  h.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}
