import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from "node:crypto";

/** scrypt cost parameters. Stored with every hash, so they can be raised without breaking old hashes. */
export interface ScryptParams {
  /** CPU/memory cost, a power of two. Default 2^15 (32 MiB per hash with r = 8). */
  N: number;
  /** Block size. Default 8. */
  r: number;
  /** Parallelization. Default 1. */
  p: number;
}

/**
 * 2^15 / 8 / 1 costs about 50–100 ms and 32 MiB per hash. OWASP's password storage cheat sheet
 * lists N = 2^17 as its first scrypt option; we trade that down because every hash runs on
 * libuv's 4-thread pool and holds 128·N·r bytes, so 2^17 would let four concurrent logins
 * claim 512 MiB in a pod with a small memory limit. Hashes carry their parameters, and a login
 * with older parameters re-hashes (see `needsRehash`), so raising N later is a one-line change.
 */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };

const KEY_LENGTH = 32;
const SALT_LENGTH = 16;
// Format: scrypt$N$r$p$<salt base64url>$<hash base64url>
const FORMAT = /^scrypt\$(\d{1,10})\$(\d{1,4})\$(\d{1,4})\$([A-Za-z0-9_-]{16,128})\$([A-Za-z0-9_-]{16,256})$/;

/** node's scrypt callback form: the work runs on the thread pool, not on the event loop. */
function derive(password: string, salt: Buffer, keyLength: number, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = {
    N: params.N,
    r: params.r,
    p: params.p,
    // node refuses when 128·N·r reaches maxmem (default 32 MiB), so leave headroom.
    maxmem: 256 * params.N * params.r,
  };
  return new Promise((resolve, reject) =>
    scrypt(password.normalize("NFC"), salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

interface Parsed {
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

function parse(stored: string): Parsed | undefined {
  const m = FORMAT.exec(stored);
  if (!m) return undefined;
  const params = { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  // A corrupted row must not make us allocate gigabytes: N is a power of two in a sane range.
  if (params.N < 2 || params.N > 2 ** 20 || (params.N & (params.N - 1)) !== 0) return undefined;
  if (params.r < 1 || params.r > 32 || params.p < 1 || params.p > 16) return undefined;
  return { params, salt: Buffer.from(m[4] as string, "base64url"), hash: Buffer.from(m[5] as string, "base64url") };
}

/** Hashes and verifies passwords with scrypt and a per-password random salt. */
export class PasswordHasher {
  readonly params: ScryptParams;
  #dummy: Promise<string> | undefined;

  /** @param params scrypt cost; default DEFAULT_SCRYPT_PARAMS. */
  constructor(params: ScryptParams = DEFAULT_SCRYPT_PARAMS) {
    this.params = params;
  }

  /** `scrypt$N$r$p$salt$hash`, salt 16 random bytes, hash 32 bytes, both base64url. */
  async hash(password: string): Promise<string> {
    const salt = randomBytes(SALT_LENGTH);
    const key = await derive(password, salt, KEY_LENGTH, this.params);
    const { N, r, p } = this.params;
    return `scrypt$${N}$${r}$${p}$${salt.toString("base64url")}$${key.toString("base64url")}`;
  }

  /** True when `password` matches `stored`. A malformed `stored` is false, never an exception. */
  async verify(password: string, stored: string): Promise<boolean> {
    const parsed = parse(stored);
    if (!parsed) return false;
    const key = await derive(password, parsed.salt, parsed.hash.length, parsed.params);
    return key.length === parsed.hash.length && timingSafeEqual(key, parsed.hash);
  }

  /**
   * Spends the same work as a real verification, against a hash of a random password, and
   * returns false. Login calls it for an unknown email so response time does not reveal which
   * emails have accounts.
   */
  async verifyNothing(password: string): Promise<false> {
    await this.verify(password, await this.#dummyHash());
    return false;
  }

  /** Computes the hash `verifyNothing` compares against, so the first unknown-email login is not slower. */
  async warmUp(): Promise<void> {
    await this.#dummyHash();
  }

  #dummyHash(): Promise<string> {
    this.#dummy ??= this.hash(randomBytes(18).toString("base64url"));
    return this.#dummy;
  }

  /** True when `stored` was made with parameters other than the current ones (re-hash on next login). */
  needsRehash(stored: string): boolean {
    const parsed = parse(stored);
    if (!parsed) return true;
    const { N, r, p } = parsed.params;
    return N !== this.params.N || r !== this.params.r || p !== this.params.p || parsed.hash.length !== KEY_LENGTH;
  }
}
