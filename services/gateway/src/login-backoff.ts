/** How failed sign-ins of one (client address, email) pair slow that pair down. */
export interface BackoffSpec {
  /** Failed logins a pair may make back to back; the last of them starts the waits. Default 5 (LOGIN_FREE_FAILURES). */
  freeFailures: number;
  /** Longest wait between attempts once backing off, ms. Default 900000 (LOGIN_BACKOFF_MAX_SECONDS). */
  maxMs: number;
}

interface Entry {
  failures: number;
  /** When the pair may try again (clock ms). */
  until: number;
}

/**
 * Exponential backoff per (client address, email): from the `freeFailures`-th failed login on, the
 * pair waits 1 s, then 2, 4, … up to `maxMs` before its next attempt; a successful login clears
 * it. Keyed by the pair, never by the email alone, so a stranger's failures slow only the
 * stranger, and guessing one account from one address gets slower with every miss.
 * Memory is bounded like TokenBuckets: least recently used pairs dropped beyond `maxKeys`.
 */
export class LoginBackoff {
  readonly #spec: BackoffSpec;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(spec: BackoffSpec, opts: { maxKeys?: number; now?: () => number } = {}) {
    this.#spec = spec;
    this.#maxKeys = opts.maxKeys ?? 100_000;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Ms until `key` may try again (0: now). */
  waitMs(key: string): number {
    const e = this.#entries.get(key);
    return e ? Math.max(0, e.until - this.#now()) : 0;
  }

  /** A failed login of `key`. */
  failed(key: string): void {
    const e = this.#entries.get(key) ?? { failures: 0, until: 0 };
    this.#entries.delete(key);
    e.failures++;
    const over = e.failures - this.#spec.freeFailures;
    e.until = over >= 0 ? this.#now() + Math.min(this.#spec.maxMs, 1000 * 2 ** Math.min(over, 30)) : 0;
    if (this.#entries.size >= this.#maxKeys) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, e);
  }

  /** A successful login of `key`: its failures are forgotten. */
  succeeded(key: string): void {
    this.#entries.delete(key);
  }
}
