import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { bearerToken, type UserTokenVerifier, verifyInCall } from "@taskmesh/platform";

export interface StreamLimitOptions {
  /** Server streams (WatchNotifications) one user may hold open at once. Default 5 (WATCH_STREAMS_PER_USER). */
  perUser: number;
  /** The edge's verifier: streams are counted per verified user id, never per a claim read unverified. */
  userTokens: UserTokenVerifier;
}

/**
 * A per-user bulkhead for server streams, in front of the per-backend one
 * (DEPENDENCY_MAX_STREAMS): without it one account opening 1000 watches took every stream slot
 * and no other user got live notifications. The excess call is RESOURCE_EXHAUSTED before any
 * backend sees it; a slot is given back when the stream ends, fails or its caller goes away.
 * A call whose token does not verify is passed on uncounted: the handler refuses it at once.
 */
export function streamLimitInterceptor(opts: StreamLimitOptions): Interceptor {
  const open = new Map<string, number>();
  return (next) => async (req) => {
    if (req.method.methodKind !== "server_streaming") return await next(req);
    const userId = await verifiedUser(opts.userTokens, req);
    if (userId === undefined) return await next(req);
    const held = open.get(userId) ?? 0;
    if (held >= opts.perUser)
      throw new ConnectError(
        `too many open streams for this user (at most ${opts.perUser}); close one before opening another`,
        Code.ResourceExhausted,
      );
    open.set(userId, held + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (open.get(userId) ?? 1) - 1;
      if (n <= 0) open.delete(userId);
      else open.set(userId, n);
    };
    req.signal.addEventListener("abort", release, { once: true });
    try {
      const res = await next(req);
      if (!res.stream) {
        release();
        return res;
      }
      return { ...res, message: releasing(res.message, release) };
    } catch (err) {
      release();
      throw err;
    }
  };
}

async function* releasing<T>(messages: AsyncIterable<T>, release: () => void): AsyncGenerator<T> {
  try {
    yield* messages;
  } finally {
    release();
  }
}

async function verifiedUser(
  userTokens: UserTokenVerifier,
  req: Parameters<Parameters<Interceptor>[0]>[0],
): Promise<string | undefined> {
  try {
    const token = bearerToken(req.header);
    return token === undefined ? undefined : await verifyInCall(req.contextValues, userTokens, token);
  } catch {
    return undefined;
  }
}
