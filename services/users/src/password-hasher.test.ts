import { describe, expect, it } from "vitest";
import { DEFAULT_SCRYPT_PARAMS, PasswordHasher } from "./password-hasher.js";

const fast = new PasswordHasher({ N: 2 ** 10, r: 8, p: 1 });

describe("PasswordHasher", () => {
  it("stores scrypt parameters, a 16-byte salt and a 32-byte hash with the hash", async () => {
    const stored = await new PasswordHasher().hash("correct horse battery staple");
    const parts = stored.split("$");
    expect(parts.slice(0, 4)).toEqual(["scrypt", String(DEFAULT_SCRYPT_PARAMS.N), "8", "1"]);
    expect(Buffer.from(parts[4] as string, "base64url")).toHaveLength(16);
    expect(Buffer.from(parts[5] as string, "base64url")).toHaveLength(32);
  });

  it("salts each hash, so one password hashes differently twice", async () => {
    expect(await fast.hash("same password")).not.toBe(await fast.hash("same password"));
  });

  it("verifies the right password and refuses a wrong one", async () => {
    const stored = await fast.hash("s3cret-passw0rd");
    expect(await fast.verify("s3cret-passw0rd", stored)).toBe(true);
    expect(await fast.verify("s3cret-passw0rd ", stored)).toBe(false);
    expect(await fast.verify("S3cret-passw0rd", stored)).toBe(false);
  });

  it("verifies a hash made with other parameters and asks for a re-hash", async () => {
    const old = await fast.hash("an older password");
    const current = new PasswordHasher({ N: 2 ** 11, r: 8, p: 1 });
    expect(await current.verify("an older password", old)).toBe(true);
    expect(current.needsRehash(old)).toBe(true);
    expect(current.needsRehash(await current.hash("an older password"))).toBe(false);
  });

  it("treats a malformed or absurd stored hash as a mismatch, not an exception", async () => {
    expect(await fast.verify("pw", "")).toBe(false);
    expect(await fast.verify("pw", "bcrypt$2b$10$abc")).toBe(false);
    // N = 2^30 would ask for gigabytes: refused before scrypt runs.
    expect(await fast.verify("pw", `scrypt$1073741824$8$1$${"A".repeat(22)}$${"A".repeat(43)}`)).toBe(false);
    expect(await fast.verify("pw", `scrypt$1000$8$1$${"A".repeat(22)}$${"A".repeat(43)}`)).toBe(false);
  });

  it("does the same scrypt work for an unknown account and still answers false", async () => {
    const hasher = new PasswordHasher();
    await hasher.warmUp();
    const stored = await hasher.hash("a real password");
    const time = async (fn: () => Promise<unknown>) => {
      const t = performance.now();
      await fn();
      return performance.now() - t;
    };
    const real = await time(() => hasher.verify("wrong password", stored));
    const dummy = await time(() => hasher.verifyNothing("wrong password"));
    expect(await hasher.verifyNothing("a real password")).toBe(false);
    // Same cost parameters, so within a generous factor of each other (scheduling noise aside).
    expect(dummy).toBeGreaterThan(real / 4);
  });
});
