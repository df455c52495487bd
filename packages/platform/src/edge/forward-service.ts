import { randomUUID } from "node:crypto";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { bearerToken } from "../auth/identity.js";
import type { UserTokenVerifier } from "../auth/tokens.js";
import { verifyInCall } from "../auth/verified-in-call.js";
import type { DependencyPolicy } from "../resilience/dependency-policy.js";
import { CLIENT_AGENT_HEADER, CLIENT_IP_HEADER } from "../rpc/client-info.js";
import type { CallOptions, GrpcClient } from "../rpc/grpc-client.js";
import { type GuardOptions, guardClient } from "./guarded-client.js";

/** Header carrying a request id from the edge to the backends (and back to the caller). */
export const REQUEST_ID_HEADER = "x-request-id";
/** A client-supplied request id is kept only if it looks like one; otherwise a fresh UUID is used. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ForwardOptions {
  /** Verifies the caller's user JWT at the edge, before any backend is called. */
  userTokens: UserTokenVerifier;
  /** Methods, by localName or name (e.g. "register", "Login"), callable without a token. Default none. */
  anonymous?: readonly string[];
  /** Cap on the deadline of a forwarded call; a caller's shorter remaining deadline wins. Default 10000 ms. */
  maxTimeoutMs?: number;
  /** When aborted (graceful shutdown), forwarded server streams end with UNAVAILABLE so clients reconnect elsewhere. */
  drainSignal?: AbortSignal;
  /**
   * The backend's timeout, circuit breaker and bulkhead (shared with any other caller of the same
   * dependency, e.g. the dashboard), with its call budget. Default: none (calls go straight to the client).
   */
  policy?: { policy: DependencyPolicy } & GuardOptions;
  /**
   * The caller's address as the edge trusts it (peer, or behind proxies an x-forwarded-for entry),
   * sent to the backend in x-taskmesh-client-ip for its audit events. Default: not sent.
   */
  clientAddress?: (call: InboundCall) => string;
}

/** What forwarding needs of the inbound call: a connect HandlerContext, or the gRPC pass-through's. */
export type InboundCall = Pick<HandlerContext, "requestHeader" | "responseHeader" | "values" | "signal" | "timeoutMs">;

/** A unary method forwarded as bytes: the encoded request in, the backend's encoded response out. */
export type BytesHandler = (request: Uint8Array, call: InboundCall) => Promise<Uint8Array>;

/**
 * Where `forwardService` puts, on the handlers it returns, the same methods forwarded as bytes
 * (`ReadonlyMap<DescMethod, BytesHandler>`): the edge serves gRPC calls of those methods without
 * decoding and re-encoding them (grpc-pass-through.ts). Only unary methods that need a user token:
 * the anonymous ones (Register, Login, ...) go through connect, where the rate limiter reads the
 * login's email from the decoded message.
 */
export const forwardedBytes = Symbol("taskmesh.forwardedBytes");

/**
 * Handlers for `service` that forward every call to its backend over `client` (one reused
 * grpc-js channel), built with one loop over the descriptor's methods rather than by hand.
 *
 * Per call: the user JWT is verified here (anonymous methods aside), so a bad token never costs
 * a backend hop; only `authorization`, a request id and the client's address and User-Agent
 * (x-taskmesh-client-ip/-agent, set here) go to the backend, never other client
 * headers (a client-set `x-user-id` reaches nobody), and the backend verifies the token again
 * itself — it never trusts the edge for identity. The deadline is the caller's remaining time
 * capped at `maxTimeoutMs`; cancellation by the caller cancels the backend call; the backend's
 * status code and message come back unchanged (the client maps grpc-js errors to ConnectError
 * with the same code, which connect-node sends as-is).
 */
export function forwardService<S extends DescService>(
  service: S,
  client: GrpcClient<S>,
  opts: ForwardOptions,
): ServiceImpl<S> {
  const maxTimeoutMs = opts.maxTimeoutMs ?? 10_000;
  const guarded = opts.policy ? guardClient(service, client, opts.policy.policy, opts.policy) : client;
  const impl: Record<string | symbol, unknown> = {};
  const bytes = new Map<DescMethod, BytesHandler>();
  impl[forwardedBytes] = bytes;
  for (const method of service.methods) {
    const anonymous = opts.anonymous?.includes(method.localName) || opts.anonymous?.includes(method.name);
    // Resolved once: the typed client's function for this method.
    const call = (guarded as unknown as Record<string, (req: unknown, o: CallOptions) => unknown>)[method.localName];
    if (!call) throw new Error(`client has no method ${method.localName}`);

    const forwardHeaders = async (ctx: InboundCall): Promise<Record<string, string>> => {
      const incoming = ctx.requestHeader.get(REQUEST_ID_HEADER);
      const requestId = incoming !== null && REQUEST_ID.test(incoming) ? incoming : randomUUID();
      ctx.responseHeader.set(REQUEST_ID_HEADER, requestId);
      const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId };
      // Set by the edge only: a client's own x-taskmesh-client-* headers are not forwarded (see above).
      const agent = ctx.requestHeader.get("user-agent");
      if (agent) headers[CLIENT_AGENT_HEADER] = agent.slice(0, 256);
      const address = opts.clientAddress?.(ctx);
      if (address) headers[CLIENT_IP_HEADER] = address;
      if (!anonymous) {
        const token = bearerToken(ctx.requestHeader);
        if (!token) throw new ConnectError("authorization: Bearer <token> is required", Code.Unauthenticated);
        await verifyInCall(ctx.values, opts.userTokens, token);
        headers.authorization = `Bearer ${token}`;
      }
      return headers;
    };

    if (method.methodKind === "unary") {
      impl[method.localName] = async (req: unknown, ctx: HandlerContext) =>
        call(req, { parent: ctx, timeoutMs: maxTimeoutMs, headers: await forwardHeaders(ctx) });
      if (!anonymous)
        bytes.set(method, async (req, ctx) =>
          guarded.callBytes(method, req, { parent: ctx, timeoutMs: maxTimeoutMs, headers: await forwardHeaders(ctx) }),
        );
    } else if (method.methodKind === "server_streaming") {
      const drain = opts.drainSignal;
      impl[method.localName] = async function* (req: unknown, ctx: HandlerContext) {
        // Streams are long-lived: no deadline unless the caller set one (no `parent`, whose
        // presence would impose the client's default deadline); the caller's cancellation and
        // the drain signal end the backend stream.
        const o: CallOptions = {
          headers: await forwardHeaders(ctx),
          signal: drain ? AbortSignal.any([ctx.signal, drain]) : ctx.signal,
        };
        const remaining = ctx.timeoutMs();
        if (remaining !== undefined) o.timeoutMs = remaining;
        try {
          yield* call(req, o) as AsyncIterable<unknown>;
        } catch (err) {
          if (drain?.aborted) throw new ConnectError("gateway shutting down, reconnect", Code.Unavailable);
          throw err;
        }
      };
    } else {
      throw new Error(`${service.typeName}.${method.name}: ${method.methodKind} methods cannot be forwarded`);
    }
  }
  return impl as ServiceImpl<S>;
}
