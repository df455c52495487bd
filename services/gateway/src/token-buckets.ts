/** How a class of callers is limited: a steady rate and the burst a full bucket allows. */
export interface BucketSpec {
  /** Tokens added per second (fractions allowed, e.g. 0.5 = one every 2 s). */
  ratePerSecond: number;
  /** Capacity: what a caller idle long enough may spend at once (>= 1). */
  burst: number;
}

export interface TokenBucketsOptions {
  /**
   * Most keys kept at once. Beyond it the least recently used key is dropped (it comes back as a
   * full bucket). Default 100000.
   */
  maxKeys?: number;
  /** Clock in ms. Default performance.now (monotonic: a wall-clock step cannot refill buckets). */
  now?: () => number;
}

/** The answer to a take: allowed, or how long until enough tokens are back. */
export type TakeResult = { allowed: true } | { allowed: false; retryAfterMs: number; limitedBy: string };

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets by key (a user id, a client address, an email), refilled lazily on use: a
 * bucket is two numbers, and nothing runs between calls.
 *
 * Memory is bounded: a Map in least-recently-used order (a used key is moved to the end), and a
 * new key beyond `maxKeys` evicts the first. A bucket evicted while not full would come back
 * full, so `maxKeys` must comfortably exceed the keys active within one refill period (a full
 * bucket, the state of any key idle for burst / rate seconds, loses nothing by eviction).
 */
export class TokenBuckets {
  readonly #spec: BucketSpec;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(spec: BucketSpec, opts: TokenBucketsOptions = {}) {
    if (!(spec.ratePerSecond > 0)) throw new Error("ratePerSecond must be > 0");
    if (!(spec.burst >= 1)) throw new Error("burst must be >= 1");
    this.#spec = spec;
    this.#maxKeys = opts.maxKeys ?? 100_000;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Keys currently kept (never more than maxKeys). */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes one token from every key's bucket, or from none: if any bucket lacks a token, nothing
   * is taken and the answer is the longest wait among them (a refused call costs nothing, so a
   * caller waiting out retry-after is not pushed further back).
   */
  take(...keys: string[]): TakeResult {
    const now = this.#now();
    const buckets = keys.map((k) => this.#refilled(k, now));
    let waitTokens = 0;
    let limitedBy = "";
    buckets.forEach((b, i) => {
      if (1 - b.tokens > waitTokens) {
        waitTokens = 1 - b.tokens;
        limitedBy = keys[i] as string;
      }
    });
    if (waitTokens > 0)
      return { allowed: false, retryAfterMs: (waitTokens / this.#spec.ratePerSecond) * 1000, limitedBy };
    for (const b of buckets) b.tokens -= 1;
    return { allowed: true };
  }

  #refilled(key: string, now: number): Bucket {
    let b = this.#buckets.get(key);
    if (b) {
      // Most recently used goes last, so the first key is the one to evict.
      this.#buckets.delete(key);
      b.tokens = Math.min(this.#spec.burst, b.tokens + ((now - b.at) / 1000) * this.#spec.ratePerSecond);
      b.at = now;
    } else {
      b = { tokens: this.#spec.burst, at: now };
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
    }
    this.#buckets.set(key, b);
    return b;
  }
}
