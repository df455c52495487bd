import { type ContextValues, createContextKey } from "@connectrpc/connect";
import type { UserTokenVerifier } from "./tokens.js";

/** Verifications done during one edge call, by token (in the call's context values). */
const verifiedKey = createContextKey<Map<string, Promise<string>> | undefined>(undefined, {
  description: "user tokens verified during this call",
});

/**
 * `verifier.verify(token)`, once per call: the gateway's rate limiter (an interceptor) and the
 * handler forwarding the call both need the caller's verified identity; the second asks here and
 * gets the first one's answer (user id or the same error) instead of checking the signature again.
 * The memo lives in the call's context values, so it ends with the call.
 */
export function verifyInCall(values: ContextValues, verifier: UserTokenVerifier, token: string): Promise<string> {
  let memo = values.get(verifiedKey);
  if (!memo) {
    memo = new Map();
    values.set(verifiedKey, memo);
  }
  let verified = memo.get(token);
  if (!verified) {
    verified = verifier.verify(token);
    verified.catch(() => {}); // observed by whoever awaits it; not an unhandled rejection meanwhile
    memo.set(token, verified);
  }
  return verified;
}
