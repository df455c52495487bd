import { Code, ConnectError } from "@connectrpc/connect";
import { createRemoteJWKSet, errors, type JWTVerifyGetKey, jwtVerify, SignJWT } from "jose";

/** Issuer and audience of user tokens; the gateway, every backend and Istio's RequestAuthentication agree on them. */
export const USER_TOKEN_ISSUER = "taskmesh-users";
export const USER_TOKEN_AUDIENCE = "taskmesh";
/** The one algorithm user tokens are signed with; verification refuses any other (including "none"). */
export const USER_TOKEN_ALG = "EdDSA";

/**
 * The users JWKS as a key getter for `createUserTokenVerifier`: fetched once and cached (5 min),
 * re-fetched when a token names a `kid` the cached set lacks — which is how a rotated key is
 * picked up without a restart. jose waits `cooldownDuration` between such re-fetches (30 s by
 * default, during which a brand-new key is refused); 1 s keeps rotation prompt while a flood of
 * made-up kids still costs the users service at most one fetch a second per verifier.
 */
export function remoteUserKeys(jwksUrl: string | URL): JWTVerifyGetKey {
  return createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 1_000, cacheMaxAge: 300_000 });
}

export interface UserTokenVerifier {
  /** The user id (`sub`) of a valid token, or UNAUTHENTICATED saying why not. */
  verify(token: string): Promise<string>;
}

export interface UserTokenVerifierOptions {
  /**
   * Longest lifetime (exp − iat) accepted, in seconds. Default 86400: the most users'
   * TOKEN_TTL_SECONDS allows, so a token minted with a 100-year exp (a leaked signing key, a bug)
   * is refused rather than good for ever.
   */
  maxLifetimeSeconds?: number;
  /**
   * How long a token that verified is taken as verified again without checking its signature,
   * in ms (never past its own `exp`). The same bearer token comes with every call of a session,
   * and an Ed25519 check is most of an edge hop's CPU; 0 turns the memo off. A retired key's
   * tokens stop verifying within this time (remote key sets are cached 5 min anyway).
   * Default 60000.
   */
  memoMs?: number;
  /** Most tokens remembered (the oldest is forgotten first). Default 10000. */
  memoSize?: number;
  /** Clock for the memo, ms since the epoch. Default Date.now. */
  now?: () => number;
}

/** Clock skew tolerated between the signer and a verifier, in seconds. */
const CLOCK_SKEW_SECONDS = 30;

/**
 * Verifies user JWTs: algorithm pinned to EdDSA; signature checked against the key named by
 * `kid` in the key set (a remote JWKS re-fetches on an unknown kid, so rotation needs no restart);
 * `exp`, `iat`, `nbf`, `iss` and `aud` required and checked, with 30 s of clock tolerance; an
 * `iat` in the future beyond that, or a lifetime over `maxLifetimeSeconds`, is refused. A token that
 * verified is remembered for `memoMs` (only successes: a bad token is checked every time).
 */
export function createUserTokenVerifier(keys: JWTVerifyGetKey, opts: UserTokenVerifierOptions = {}): UserTokenVerifier {
  const maxLifetime = opts.maxLifetimeSeconds ?? 86_400;
  const memoMs = opts.memoMs ?? 60_000;
  const memoSize = opts.memoSize ?? 10_000;
  const now = opts.now ?? Date.now;
  // token → its subject and until when it counts as verified (Map order = insertion: oldest first).
  const memo = new Map<string, { sub: string; untilMs: number }>();
  return {
    async verify(token) {
      const known = memo.get(token);
      if (known !== undefined) {
        if (now() < known.untilMs) return known.sub;
        memo.delete(token);
      }
      try {
        const { payload } = await jwtVerify(token, keys, {
          algorithms: [USER_TOKEN_ALG],
          issuer: USER_TOKEN_ISSUER,
          audience: USER_TOKEN_AUDIENCE,
          requiredClaims: ["exp", "sub", "iat"],
          clockTolerance: CLOCK_SKEW_SECONDS,
          currentDate: new Date(now()),
        });
        if (typeof payload.sub !== "string" || payload.sub === "")
          throw new errors.JWTClaimValidationFailed("sub", payload);
        checkLifetime(payload, maxLifetime, now());
        if (memoMs > 0) {
          // jose accepts a token until exp + the clock tolerance; the memo never outlives that.
          const untilMs = Math.min(now() + memoMs, ((payload.exp as number) + CLOCK_SKEW_SECONDS) * 1000);
          if (memo.size >= memoSize) memo.delete(memo.keys().next().value as string);
          memo.set(token, { sub: payload.sub, untilMs });
        }
        return payload.sub;
      } catch (e) {
        // A key getter may report its own status (e.g. UNAVAILABLE when the key set cannot be fetched).
        if (e instanceof ConnectError) throw e;
        throw new ConnectError(`invalid token: ${describeJoseError(e)}`, Code.Unauthenticated);
      }
    },
  };
}

/** `iat` not in the future (beyond the skew) and `exp − iat` within `maxLifetime` seconds. */
function checkLifetime(payload: { iat?: number; exp?: number }, maxLifetime: number, nowMs: number): void {
  const now = Math.floor(nowMs / 1000);
  const iat = payload.iat ?? 0;
  if (iat > now + CLOCK_SKEW_SECONDS)
    throw new errors.JWTClaimValidationFailed("iat in the future", payload, "iat", "is in the future");
  if ((payload.exp ?? 0) - iat > maxLifetime)
    throw new errors.JWTClaimValidationFailed(
      "lifetime too long",
      payload,
      "exp",
      `is more than ${maxLifetime} s after iat`,
    );
}

function describeJoseError(e: unknown): string {
  if (e instanceof errors.JWTExpired) return "expired";
  if (e instanceof errors.JWTClaimValidationFailed) return `claim ${e.claim} ${e.reason}`;
  if (e instanceof errors.JWSSignatureVerificationFailed) return "signature does not verify";
  if (e instanceof errors.JWKSNoMatchingKey) return "no key matches its kid";
  if (e instanceof errors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (e instanceof errors.JWKSTimeout || e instanceof errors.JOSEError) {
    if ((e as errors.JOSEError).code === "ERR_JWKS_TIMEOUT") return "key set unavailable";
    return "malformed";
  }
  return "malformed";
}

/**
 * Service-to-service identity outside the mesh: short-lived HS256 tokens under a secret shared
 * by the processes `npm start` launches (TASKMESH_SERVICE_SECRET). In the mesh, Istio's mTLS
 * and AuthorizationPolicies decide who may call an internal service; the token is then a
 * second check, not the only one.
 */
/** Service tokens live 600 s; a longer one was not minted by ServiceTokens. */
const SERVICE_TOKEN_MAX_LIFETIME_SECONDS = 600;

export class ServiceTokens {
  readonly #key: Uint8Array;
  readonly #name: string;
  #cached: { token: string; expires: number } | undefined;

  constructor(secret: string, serviceName: string) {
    if (secret.length < 32) throw new Error("service secret must be at least 32 characters");
    this.#key = new TextEncoder().encode(secret);
    this.#name = serviceName;
  }

  /** A token naming this service, reused until a minute before it expires. */
  async token(): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    if (this.#cached && this.#cached.expires - 60 > now) return this.#cached.token;
    const expires = now + 600;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(this.#name)
      .setIssuer("taskmesh-service")
      .setAudience("taskmesh-internal")
      .setIssuedAt(now)
      .setExpirationTime(expires)
      .sign(this.#key);
    this.#cached = { token, expires };
    return token;
  }

  /** The calling service's name, or UNAUTHENTICATED. */
  async verify(token: string): Promise<string> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ["HS256"],
        issuer: "taskmesh-service",
        audience: "taskmesh-internal",
        requiredClaims: ["exp", "sub", "iat"],
        clockTolerance: CLOCK_SKEW_SECONDS,
      });
      checkLifetime(payload, SERVICE_TOKEN_MAX_LIFETIME_SECONDS, Date.now());
      return payload.sub as string;
    } catch (e) {
      throw new ConnectError(`invalid service token: ${describeJoseError(e)}`, Code.Unauthenticated);
    }
  }
}
