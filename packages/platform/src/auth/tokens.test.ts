import { createServer, type Server } from "node:http";
import { Code, type ConnectError } from "@connectrpc/connect";
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createUserTokenVerifier,
  remoteUserKeys,
  USER_TOKEN_ALG,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
} from "./tokens.js";

async function key(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: USER_TOKEN_ALG, use: "sig" };
  const sign = (sub: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: USER_TOKEN_ALG, kid })
      .setSubject(sub)
      .setIssuer(USER_TOKEN_ISSUER)
      .setAudience(USER_TOKEN_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(privateKey);
  return { jwk, sign };
}

describe("remoteUserKeys", () => {
  let server: Server;
  let url: string;
  let published: JWK[] = [];
  let fetches = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: published }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const addr = server.address();
    url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/.well-known/jwks.json`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("accepts a rotated key's tokens within seconds of its publication, without a restart", async () => {
    const k1 = await key("k1");
    const k2 = await key("k2");
    published = [k1.jwk];
    const verifier = createUserTokenVerifier(remoteUserKeys(url));
    expect(await verifier.verify(await k1.sign("user-1"))).toBe("user-1");

    // users rotates: the new key is published and signs from now on; the old one still verifies.
    published = [k2.jwk, k1.jwk];
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await verifier.verify(await k2.sign("user-2"))).toBe("user-2");
    expect(await verifier.verify(await k1.sign("user-1"))).toBe("user-1");
  });

  it("refuses a token whose kid the key set does not have, fetching at most once per cooldown", async () => {
    const stranger = await key("nobody");
    const verifier = createUserTokenVerifier(remoteUserKeys(url));
    const before = fetches;
    const token = await stranger.sign("user-x");
    for (let i = 0; i < 20; i++) {
      const err = await verifier.verify(token).catch((e) => e);
      expect(err.code).toBe(Code.Unauthenticated);
    }
    expect(fetches - before).toBeLessThanOrEqual(2);
  });
});

describe("createUserTokenVerifier", () => {
  async function signer() {
    const { publicKey, privateKey } = await generateKeyPair("EdDSA", { extractable: true });
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: "k", alg: USER_TOKEN_ALG, use: "sig" };
    const verifier = createUserTokenVerifier(createLocalJWKSet({ keys: [jwk] }));
    const sign = (iat: number, exp: number) =>
      new SignJWT({})
        .setProtectedHeader({ alg: USER_TOKEN_ALG, kid: "k" })
        .setSubject("user-1")
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(privateKey);
    return { verifier, sign };
  }
  const now = () => Math.floor(Date.now() / 1000);

  it("refuses a token issued in the future beyond the clock skew, and accepts one within it", async () => {
    const { verifier, sign } = await signer();
    const err = await verifier.verify(await sign(now() + 3600, now() + 7200)).catch((e: ConnectError) => e);
    expect(err).toMatchObject({ code: Code.Unauthenticated, rawMessage: "invalid token: claim iat is in the future" });
    expect(await verifier.verify(await sign(now() + 10, now() + 600))).toBe("user-1");
  });

  it("refuses a token whose lifetime is over the maximum (a 100-year exp), and accepts a day", async () => {
    const { verifier, sign } = await signer();
    const err = await verifier.verify(await sign(now(), now() + 100 * 365 * 86_400)).catch((e: ConnectError) => e);
    expect(err).toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: "invalid token: claim exp is more than 86400 s after iat",
    });
    expect(await verifier.verify(await sign(now(), now() + 86_400))).toBe("user-1");
  });

  it("takes a token that verified as verified for memoMs without checking it again, never past its exp", async () => {
    const { publicKey, privateKey } = await generateKeyPair("EdDSA", { extractable: true });
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: "k", alg: USER_TOKEN_ALG, use: "sig" };
    const local = createLocalJWKSet({ keys: [jwk] });
    let lookups = 0;
    let clock = Date.now();
    const verifier = createUserTokenVerifier(
      (header, token) => {
        lookups++;
        return local(header, token);
      },
      { memoMs: 60_000, now: () => clock },
    );
    const sign = (expSeconds: number) =>
      new SignJWT({})
        .setProtectedHeader({ alg: USER_TOKEN_ALG, kid: "k" })
        .setSubject("user-1")
        .setIssuer(USER_TOKEN_ISSUER)
        .setAudience(USER_TOKEN_AUDIENCE)
        .setIssuedAt(Math.floor(clock / 1000))
        .setExpirationTime(Math.floor(clock / 1000) + expSeconds)
        .sign(privateKey);
    const token = await sign(3600);
    expect(await verifier.verify(token)).toBe("user-1");
    expect(await verifier.verify(token)).toBe("user-1");
    expect(lookups).toBe(1);
    clock += 61_000; // the memo has lapsed: the signature is checked again
    expect(await verifier.verify(token)).toBe("user-1");
    expect(lookups).toBe(2);

    const shortLived = await sign(10);
    expect(await verifier.verify(shortLived)).toBe("user-1");
    clock += 45_000; // past exp + the 30 s skew, within memoMs: refused, not remembered
    await expect(verifier.verify(shortLived)).rejects.toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: "invalid token: expired",
    });
    const forged = `${token.slice(0, -4)}AAAA`;
    await expect(verifier.verify(forged)).rejects.toMatchObject({ code: Code.Unauthenticated });
    await expect(verifier.verify(forged)).rejects.toMatchObject({ code: Code.Unauthenticated });
  });
});
