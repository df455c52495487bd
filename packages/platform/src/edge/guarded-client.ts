import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { DependencyPolicy } from "../resilience/dependency-policy.js";
import type { CallOptions, GrpcClient } from "../rpc/grpc-client.js";

type AnyCall = (req: unknown, o?: CallOptions) => unknown;

export interface GuardOptions {
  /** The dependency's own budget for a call that sets no `timeoutMs`. */
  defaultTimeoutMs: number;
  /**
   * Kept back from the caller's remaining deadline, so the caller still gets an answer (e.g. a
   * dashboard with a part missing) before its own deadline passes: the larger of `reserveMs`
   * and `reserveFraction` of what remains (an answer takes longer to reach the caller on a busy
   * host, and a longer deadline can spare more). Defaults 0 and 0.
   */
  reserveMs?: number;
  reserveFraction?: number;
  /** Whether a missed deadline counts against the dependency's breaker (DependencyCallOptions). Default true. */
  deadlineCounts?: boolean;
}

/**
 * The same typed client, with every unary call run through `policy` (timeout, circuit breaker,
 * bulkhead of that dependency). Several guarded views of one client can share one policy: the
 * forwarding routes and the dashboard then draw on the same breaker and bulkhead.
 *
 * `parent` (the inbound call) is used for its remaining deadline and its cancellation, and is
 * not handed on: the call gets the policy's signal (which follows the caller's) and the budget as
 * its deadline, so the backend sees exactly the time it is given.
 *
 * Server streams are long-lived and bounded by their callers, not by a call budget: the call
 * options go to the backend unchanged (no deadline unless the caller set one), while the
 * policy's breaker is checked when the stream opens (open: UNAVAILABLE without a backend hop), a
 * stream slot is held until it ends (`DependencyPolicy.openStream`), and the outcome is reported
 * to the breaker: the first message counts as an answer, an end with UNAVAILABLE/INTERNAL/UNKNOWN
 * before any message as a failure, a caller's cancel as nothing.
 */
export function guardClient<S extends DescService>(
  service: S,
  client: GrpcClient<S>,
  policy: DependencyPolicy,
  opts: GuardOptions,
): GrpcClient<S> {
  const reserve = (remainingMs: number) =>
    Math.max(opts.reserveMs ?? 0, Math.floor(remainingMs * (opts.reserveFraction ?? 0)));
  /** Runs one unary call (typed or bytes) through the policy, with the budget as its deadline. */
  const guardUnary = <T>(run: (o: CallOptions) => Promise<T>, o: CallOptions): Promise<T> => {
    const remaining = o.parent?.timeoutMs();
    const callerSignal =
      o.parent && o.signal ? AbortSignal.any([o.parent.signal, o.signal]) : (o.parent?.signal ?? o.signal);
    return policy.execute((signal, budgetMs) => run({ headers: o.headers, signal, timeoutMs: budgetMs }), {
      timeoutMs: o.timeoutMs ?? opts.defaultTimeoutMs,
      callerRemainingMs: remaining === undefined ? undefined : remaining - reserve(remaining),
      signal: callerSignal,
      deadlineCounts: opts.deadlineCounts,
    });
  };
  const guarded: Record<string, unknown> = {
    close: () => client.close(),
    channel: client.channel,
    callBytes: (method: DescMethod, request: Uint8Array, o: CallOptions = {}) =>
      guardUnary((g) => client.callBytes(method, request, g), o),
  };
  for (const method of service.methods) {
    const call = (client as unknown as Record<string, AnyCall>)[method.localName];
    if (!call) throw new Error(`client has no method ${method.localName}`);
    if (method.methodKind === "server_streaming") {
      guarded[method.localName] = (req: unknown, o: CallOptions = {}) =>
        guardStream(policy, () => call(req, o) as AsyncIterable<unknown>, o);
      continue;
    }
    if (method.methodKind !== "unary") throw new Error(`${service.typeName}.${method.name} cannot be guarded`);
    guarded[method.localName] = (req: unknown, o: CallOptions = {}) =>
      guardUnary((g) => call(req, g) as Promise<unknown>, o);
  }
  return guarded as GrpcClient<S>;
}

async function* guardStream(
  policy: DependencyPolicy,
  open: () => AsyncIterable<unknown>,
  o: CallOptions,
): AsyncGenerator<unknown> {
  const lease = policy.openStream();
  try {
    let answered = false;
    for await (const message of open()) {
      if (!answered) {
        answered = true;
        lease.answered();
      }
      yield message;
    }
    lease.answered();
  } catch (e) {
    const err = ConnectError.from(e);
    lease.failed(err, Boolean(o.signal?.aborted || o.parent?.signal.aborted));
    throw err;
  } finally {
    lease.release();
  }
}
