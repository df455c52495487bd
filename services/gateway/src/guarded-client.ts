import type { DescService } from "@bufbuild/protobuf";
import type { CallOptions, GrpcClient } from "@taskmesh/platform";
import type { DependencyPolicy } from "./dependency-policy.js";

type AnyCall = (req: unknown, o?: CallOptions) => unknown;

export interface GuardOptions {
  /** The dependency's own budget for a call that sets no `timeoutMs`. */
  defaultTimeoutMs: number;
  /**
   * Kept back from the caller's remaining deadline, so the caller still gets an answer (e.g. a
   * dashboard with a part missing) before its own deadline passes. Default 0.
   */
  reserveMs?: number;
}

/**
 * The same typed client, with every unary call run through `policy` (timeout, circuit breaker,
 * bulkhead of that dependency). Several guarded views of one client can share one policy: the
 * forwarding routes and the dashboard then draw on the same breaker and bulkhead.
 *
 * `parent` (the inbound call) is used for its remaining deadline and its cancellation, and is
 * not handed on: the call gets the policy's signal (which follows the caller's) and the budget as
 * its deadline, so the backend sees exactly the time it is given. Server streams pass through
 * unguarded: they are long-lived and bounded by their callers, not by a call budget.
 */
export function guardClient<S extends DescService>(
  service: S,
  client: GrpcClient<S>,
  policy: DependencyPolicy,
  opts: GuardOptions,
): GrpcClient<S> {
  const reserveMs = opts.reserveMs ?? 0;
  const guarded: Record<string, unknown> = { close: () => client.close(), channel: client.channel };
  for (const method of service.methods) {
    const call = (client as unknown as Record<string, AnyCall>)[method.localName];
    if (!call) throw new Error(`client has no method ${method.localName}`);
    if (method.methodKind !== "unary") {
      guarded[method.localName] = call;
      continue;
    }
    guarded[method.localName] = (req: unknown, o: CallOptions = {}) => {
      const remaining = o.parent?.timeoutMs();
      const callerSignal =
        o.parent && o.signal ? AbortSignal.any([o.parent.signal, o.signal]) : (o.parent?.signal ?? o.signal);
      return policy.execute(
        (signal, budgetMs) => call(req, { headers: o.headers, signal, timeoutMs: budgetMs }) as Promise<unknown>,
        {
          timeoutMs: o.timeoutMs ?? opts.defaultTimeoutMs,
          callerRemainingMs: remaining === undefined ? undefined : remaining - reserveMs,
          signal: callerSignal,
        },
      );
    };
  }
  return guarded as GrpcClient<S>;
}
