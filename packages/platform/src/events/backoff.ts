/** Exponential backoff bounds. */
export interface BackoffOptions {
  /** Delay before the first retry. */
  initialMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
}

/**
 * Delay before retry number `attempt` (1 = first retry): `initialMs * 2^(attempt-1)` capped at
 * `maxMs`, with "equal jitter" (half fixed, half random) so that many instances retrying after
 * the same outage do not hit NATS in lock-step, while every delay still grows with the attempt.
 * https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const exp = opts.initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30));
  const capped = Math.min(opts.maxMs, exp);
  return Math.round(capped / 2 + (capped / 2) * random());
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
