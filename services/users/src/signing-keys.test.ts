import { readFileSync, statSync, writeFileSync } from "node:fs";
import { createUserTokenVerifier } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { createLocalJWKSet, decodeProtectedHeader } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { SigningKeys } from "./signing-keys.js";
import { TokenIssuer } from "./token-issuer.js";

const dirs: { remove(): void }[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});
function keyPath(): string {
  const d = tempDir("users-keys-");
  dirs.push(d);
  return `${d.path}/nested/users-signing-key.json`;
}

describe("SigningKeys", () => {
  it("generates an Ed25519 key on first open, in a file only the owner can read", async () => {
    const path = keyPath();
    const keys = await SigningKeys.open(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(keys.jwks.keys).toHaveLength(1);
    const [jwk] = keys.jwks.keys;
    expect(jwk).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig", kid: keys.current.kid });
    // The JWKS is public: no private part may leak into it.
    expect(jwk).not.toHaveProperty("d");
  });

  it("loads the same key on the next open instead of generating another", async () => {
    const path = keyPath();
    const first = await SigningKeys.open(path);
    const second = await SigningKeys.open(path);
    expect(second.current.kid).toBe(first.current.kid);
    expect(second.jwks).toEqual(first.jwks);
  });

  it("signs with the new key after a rotation while tokens of the old key still verify through the JWKS", async () => {
    const path = keyPath();
    const keys = await SigningKeys.open(path);
    const issuer = new TokenIssuer(() => keys.current, 3600);
    const oldKid = keys.current.kid;
    const before = await issuer.issue("user-1");

    const newKid = await keys.rotate();
    expect(newKid).not.toBe(oldKid);
    const after = await issuer.issue("user-2");
    expect(decodeProtectedHeader(before.token).kid).toBe(oldKid);
    expect(decodeProtectedHeader(after.token).kid).toBe(newKid);
    expect(keys.jwks.keys.map((k) => k.kid)).toEqual([newKid, oldKid]);

    // A verifier holding only the published JWKS (as the gateway does) accepts both.
    const published = JSON.parse(JSON.stringify(keys.jwks));
    const remote = createUserTokenVerifier(createLocalJWKSet(published));
    expect(await remote.verify(before.token)).toBe("user-1");
    expect(await remote.verify(after.token)).toBe("user-2");
    // So does this process's own key getter, and a restart keeps both keys and the new signer.
    expect(await createUserTokenVerifier(keys.keyGetter).verify(before.token)).toBe("user-1");
    const reopened = await SigningKeys.open(path);
    expect(reopened.current.kid).toBe(newKid);
    expect(await createUserTokenVerifier(reopened.keyGetter).verify(before.token)).toBe("user-1");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("drops a retired key from the JWKS, so its tokens stop verifying", async () => {
    const keys = await SigningKeys.open(keyPath());
    const issuer = new TokenIssuer(() => keys.current, 3600);
    const oldKid = keys.current.kid;
    const old = await issuer.issue("user-1");
    await keys.rotate();
    await keys.retire(oldKid);
    expect(keys.jwks.keys.map((k) => k.kid)).not.toContain(oldKid);
    await expect(createUserTokenVerifier(keys.keyGetter).verify(old.token)).rejects.toThrow(/no key matches its kid/);
    await expect(keys.retire(keys.current.kid)).rejects.toThrow(/last active key/);
  });

  it("keeps every key when rotations overlap", async () => {
    const path = keyPath();
    const keys = await SigningKeys.open(path);
    const kids = await Promise.all([keys.rotate(), keys.rotate(), keys.rotate()]);
    const reopened = await SigningKeys.open(path);
    expect(reopened.jwks.keys).toHaveLength(4);
    expect(reopened.current.kid).toBe(kids[2]);
  });

  it("refuses a key file whose kid does not match its key", async () => {
    const path = keyPath();
    await SigningKeys.open(path);
    const file = JSON.parse(readFileSync(path, "utf8"));
    file.keys[0].kid = "forged";
    writeFileSync(path, JSON.stringify(file));
    await expect(SigningKeys.open(path)).rejects.toThrow(/does not match its key/);
  });
});
