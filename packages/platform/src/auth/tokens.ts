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

/**
 * Verifies user JWTs: algorithm pinned to EdDSA; signature checked against the key named by
 * `kid` in the key set (a remote JWKS re-fetches on an unknown kid, so rotation needs no restart);
 * `exp`, `nbf`, `iss` and `aud` required and checked, with 30 s of clock tolerance.
 */
export function createUserTokenVerifier(keys: JWTVerifyGetKey): UserTokenVerifier {
  return {
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, keys, {
          algorithms: [USER_TOKEN_ALG],
          issuer: USER_TOKEN_ISSUER,
          audience: USER_TOKEN_AUDIENCE,
          requiredClaims: ["exp", "sub", "iat"],
          clockTolerance: 30,
        });
        if (typeof payload.sub !== "string" || payload.sub === "")
          throw new errors.JWTClaimValidationFailed("sub", payload);
        return payload.sub;
      } catch (e) {
        // A key getter may report its own status (e.g. UNAVAILABLE when the key set cannot be fetched).
        if (e instanceof ConnectError) throw e;
        throw new ConnectError(`invalid token: ${describeJoseError(e)}`, Code.Unauthenticated);
      }
    },
  };
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
        requiredClaims: ["exp", "sub"],
      });
      return payload.sub as string;
    } catch (e) {
      throw new ConnectError(`invalid service token: ${describeJoseError(e)}`, Code.Unauthenticated);
    }
  }
}
