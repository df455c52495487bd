import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { bearerToken, type Logger, meter, type UserTokenVerifier, verifyInCall } from "@taskmesh/platform";
import { peerAddressKey } from "@taskmesh/platform/edge";
import { type BackoffSpec, LoginBackoff } from "./login-backoff.js";
import { retryInfo } from "./retry-info.js";
import { type BucketSpec, TokenBuckets } from "./token-buckets.js";

/** Response header (Connect: HTTP header; gRPC: trailer) with the seconds to wait, as HTTP's Retry-After. */
export const RETRY_AFTER_HEADER = "retry-after";

export interface RateLimits {
  /** Per verified user (and per client address for calls without a valid token). Undefined: no limit. */
  user: BucketSpec | undefined;
  /** Register, Login and RefreshSession per client address. Undefined: no limit. */
  login: BucketSpec | undefined;
  /**
   * Login per email from all addresses together: a ceiling well above `login` (LOGIN_EMAIL_CEILING_FACTOR
   * times it, default 10), so one stranger runs into their address's limit long before it, and the
   * owner's logins from their own address are not throttled by the stranger's. Undefined: no ceiling.
   */
  loginEmail?: BucketSpec | undefined;
  /** Backoff of failed Logins per (client address, email). Undefined: none. */
  loginBackoff?: BackoffSpec | undefined;
  /** Keys kept per bucket map (users, login); least recently used dropped beyond. */
  maxKeys: number;
  /**
   * Proxies in front of the gateway that append to `x-forwarded-for`: the client address is the
   * entry this many places from the right. 0: the TCP peer, and the header is ignored (a client
   * could write anything there).
   */
  trustedProxyHops: number;
}

export interface RateLimitOptions {
  limits: RateLimits;
  /** The edge's verifier: a user's bucket is keyed by the id of a token that verified, never by a claim read unverified. */
  userTokens: UserTokenVerifier;
  logger?: Logger;
  /** Clock for the buckets, ms. Default performance.now. */
  now?: () => number;
}

/** What a refusal is counted under (`limit` label of taskmesh_gateway_rate_limited_total). */
type Limit = "user" | "address" | "login_address" | "login_email" | "login_backoff";

const LOGIN = `${UserService.typeName}/${UserService.method.login.name}`;
const REGISTER = `${UserService.typeName}/${UserService.method.register.name}`;
const REFRESH = `${UserService.typeName}/${UserService.method.refreshSession.name}`;
/** Only the API is limited; health probes (kubelet, load balancers) and reflection never are. */
const LIMITED = /^taskmesh\./;

/**
 * The gateway's rate limiter, one connect interceptor in front of every public method: a token
 * bucket per verified user id for normal calls, and stricter buckets for Register, Login and
 * RefreshSession (they need no token, so they are what a password guesser, an account farmer or a
 * refresh-token guesser calls) per client address. Login also backs off exponentially per (address, email) after repeated failures, and
 * has a per-email ceiling across all addresses set far above the address limit. Nothing is keyed
 * by the email alone at the address limit's level: that let a stranger who knows an address lock
 * its owner out (issue 12).
 *
 * A call without a token, or whose token does not verify, is counted per client address under
 * the normal limits (the handler then refuses it with UNAUTHENTICATED): forged tokens cannot
 * drain a real user's bucket, and floods of bad tokens still run out.
 *
 * Over a limit the call is refused before any backend sees it: RESOURCE_EXHAUSTED with the
 * seconds to wait in a `retry-after` header/trailer and a google.rpc.RetryInfo detail, counted in
 * the metric taskmesh.gateway.rate_limited{limit, rpc_service, rpc_method}. A refused call takes
 * no tokens.
 */
export function rateLimitInterceptor(opts: RateLimitOptions): Interceptor {
  const { limits, userTokens } = opts;
  const bucketOpts = { maxKeys: limits.maxKeys, ...(opts.now ? { now: opts.now } : {}) };
  const users = limits.user && new TokenBuckets(limits.user, bucketOpts);
  const logins = limits.login && new TokenBuckets(limits.login, bucketOpts);
  const emails = limits.loginEmail && new TokenBuckets(limits.loginEmail, bucketOpts);
  const backoff = limits.loginBackoff && new LoginBackoff(limits.loginBackoff, bucketOpts);

  return (next) => async (req) => {
    if (!LIMITED.test(req.service.typeName)) return await next(req);
    const path = `${req.service.typeName}/${req.method.name}`;
    const address = clientAddress(req.contextValues.get(peerAddressKey), req.header, limits.trustedProxyHops);

    let refused: { retryAfterMs: number; limit: Limit } | undefined;
    let pair: string | undefined;
    if (path === LOGIN || path === REGISTER || path === REFRESH) {
      const email = path === LOGIN && !req.stream ? loginEmail(req.message) : undefined;
      if (email !== undefined) pair = `${address}|${email}`;
      const wait = pair && backoff ? backoff.waitMs(pair) : 0;
      if (wait > 0) refused = { retryAfterMs: wait, limit: "login_backoff" };
      const r = refused || !logins ? undefined : logins.take(`address:${address}`);
      if (r && !r.allowed) refused = { retryAfterMs: r.retryAfterMs, limit: "login_address" };
      const e = refused || !emails || email === undefined ? undefined : emails.take(`email:${email}`);
      if (e && !e.allowed) refused = { retryAfterMs: e.retryAfterMs, limit: "login_email" };
    } else if (users) {
      const userId = await verifiedUser(userTokens, req);
      const r = users.take(userId === undefined ? `address:${address}` : `user:${userId}`);
      if (!r.allowed) refused = { retryAfterMs: r.retryAfterMs, limit: userId === undefined ? "address" : "user" };
    }
    if (refused) {
      rateLimited().add(1, { limit: refused.limit, rpc_service: req.service.typeName, rpc_method: req.method.name });
      opts.logger?.debug({ limit: refused.limit, method: path, address }, "rate limited");
      throw tooMany(refused.retryAfterMs, refused.limit);
    }
    if (!pair || !backoff) return await next(req);
    try {
      const res = await next(req);
      backoff.succeeded(pair);
      return res;
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unauthenticated) backoff.failed(pair);
      throw err;
    }
  };
}

function tooMany(retryAfterMs: number, limit: Limit): ConnectError {
  // Whole seconds, at least 1: Retry-After has no fractions (RFC 9110 §10.2.3), and 0 invites a spin.
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  const what =
    limit === "login_email"
      ? "too many sign-in attempts for this email from all addresses together"
      : limit === "login_backoff"
        ? "too many failed sign-ins for this email from this address"
        : limit === "login_address"
          ? "too many sign-in or sign-up attempts from this address"
          : "rate limit exceeded";
  return new ConnectError(
    `${what}; retry after ${seconds} s`,
    Code.ResourceExhausted,
    { [RETRY_AFTER_HEADER]: String(seconds) },
    [retryInfo(seconds * 1000)],
  );
}

async function verifiedUser(
  userTokens: UserTokenVerifier,
  req: { header: Headers; contextValues: ContextValues },
): Promise<string | undefined> {
  try {
    const token = bearerToken(req.header);
    // The handler forwarding the call asks again: verifyInCall answers it from this verification.
    return token === undefined ? undefined : await verifyInCall(req.contextValues, userTokens, token);
  } catch {
    // Malformed, invalid or unverifiable right now: limited by address; the handler says why.
    return undefined;
  }
}

/** Login's email in lower case (as users compares it) and trimmed, bounded in length. */
function loginEmail(message: unknown): string | undefined {
  const email = (message as { email?: unknown } | undefined)?.email;
  if (typeof email !== "string") return undefined;
  const normalized = email.trim().toLowerCase().slice(0, 254);
  return normalized === "" ? undefined : normalized;
}

/**
 * The client's address: the TCP peer, or with `trustedHops` proxies in front the entry that far
 * from the right of x-forwarded-for (the one our outermost proxy appended; entries left of it are
 * the client's to forge). IPv4-mapped IPv6 is written as IPv4, and IPv6 is cut to its /64: one
 * host usually holds a whole /64, so per-address limits would otherwise be per-host-times-2^64.
 */
export function clientAddress(peer: string, header: Headers, trustedHops: number): string {
  return normalizeAddress(clientIp(peer, header, trustedHops));
}

/**
 * The client's address as clientAddress picks it, written out whole (IPv4-mapped IPv6 as IPv4,
 * IPv6 not cut to its /64): what audit events record.
 */
export function clientIp(peer: string, header: Headers, trustedHops: number): string {
  let address = peer;
  if (trustedHops > 0) {
    const chain = (header.get("x-forwarded-for") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    const entry = chain[chain.length - trustedHops];
    if (entry !== undefined) address = entry;
  }
  const a = address.toLowerCase();
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

function normalizeAddress(address: string): string {
  const a = address.toLowerCase();
  if (a.startsWith("::ffff:") && a.includes(".")) return a.slice(7);
  if (!a.includes(":")) return a;
  const groups = expandIpv6(a);
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : a;
}

/** "2001:db8::1" → ["2001","db8","0","0","0","0","0","1"], or undefined when it is not IPv6. */
function expandIpv6(a: string): string[] | undefined {
  const zoneless = a.split("%")[0] ?? "";
  const halves = zoneless.split("::");
  if (halves.length > 2) return undefined;
  const left = halves[0] ? (halves[0] as string).split(":") : [];
  const right = halves.length === 2 && halves[1] ? (halves[1] as string).split(":") : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...left, ...Array.from({ length: halves.length === 2 ? missing : 0 }, () => "0"), ...right];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.replace(/^0+(?=.)/, ""));
}

type Meter = ReturnType<typeof meter>;
type Counter = ReturnType<Meter["createCounter"]>;
// Looked up per refusal (a provider caches its meters by name, so this is one WeakMap get):
// a counter made before telemetry starts would stay a no-op forever.
const counters = new WeakMap<Meter, Counter>();
function rateLimited(): Counter {
  const m = meter("taskmesh.gateway");
  let c = counters.get(m);
  if (!c) {
    c = m.createCounter("taskmesh.gateway.rate_limited", {
      description: "Calls refused by the gateway's rate limiter, by limit and method",
    });
    counters.set(m, c);
  }
  return c;
}
