import { randomUUID } from "node:crypto";
import { USER_TOKEN_ALG, USER_TOKEN_AUDIENCE, USER_TOKEN_ISSUER } from "@taskmesh/platform";
import { type CryptoKey, SignJWT } from "jose";

/** The key to sign with and its `kid` (SigningKeys.current: the newest key after a rotation). */
export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

export interface IssuedToken {
  token: string;
  expireTime: Date;
}

/**
 * Signs user access tokens with the current signing key. The claims are what
 * `createUserTokenVerifier` (gateway, backends) and Istio's RequestAuthentication check:
 * alg EdDSA with `kid`, iss/aud fixed, sub = user id, iat = nbf = now, exp = now + ttl, and a
 * random jti so two tokens are never equal (useful in logs and for a future deny list),
 * `sid`, the session the token was issued for, and `email`, the account's email.
 */
export class TokenIssuer {
  readonly #signingKey: () => SigningKey;
  readonly #ttlSeconds: number;
  readonly #now: () => number;

  /**
   * @param signingKey read per token, so a rotation takes effect on the next login.
   * @param ttlSeconds lifetime of a token (TOKEN_TTL_SECONDS, default 900).
   * @param now clock in ms; default Date.now.
   */
  constructor(signingKey: () => SigningKey, ttlSeconds: number, now: () => number = Date.now) {
    this.#signingKey = signingKey;
    this.#ttlSeconds = ttlSeconds;
    this.#now = now;
  }

  /**
   * @param sessionId the session the token belongs to, as the `sid` claim (Logout, ListSessions read it).
   * @param email the account's email, as the `email` claim (tasks matches project invitations by
   *   it); a changed email is in the next token issued.
   */
  async issue(userId: string, sessionId?: string, email?: string): Promise<IssuedToken> {
    const { kid, privateKey } = this.#signingKey();
    const iat = Math.floor(this.#now() / 1000);
    const exp = iat + this.#ttlSeconds;
    const token = await new SignJWT({ ...(sessionId ? { sid: sessionId } : {}), ...(email ? { email } : {}) })
      .setProtectedHeader({ alg: USER_TOKEN_ALG, kid, typ: "JWT" })
      .setSubject(userId)
      .setIssuer(USER_TOKEN_ISSUER)
      .setAudience(USER_TOKEN_AUDIENCE)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(privateKey);
    return { token, expireTime: new Date(exp * 1000) };
  }
}
