import { TransientError } from "@taskmesh/platform";

/** A failure that another attempt would meet again (a 4xx answer, a 5xx SMTP rejection). */
export class PermanentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentError";
  }
}

export interface RetryOptions {
  /** Attempts in all, at least 1. */
  attempts: number;
  /** Delay before the 2nd attempt, doubled for each later one, capped at maxMs. */
  backoff: { initialMs: number; maxMs: number };
  /** Aborted when the service shuts down: the wait ends and a TransientError is thrown (the event is redelivered). */
  signal?: AbortSignal | undefined;
  /** Called before each attempt (1-based), e.g. to record it in the delivery log. */
  onAttempt?: ((attempt: number) => void) | undefined;
  random?: () => number;
}

/**
 * Runs `fn` until it succeeds, throws a PermanentError, or `attempts` are used up (the last error
 * is rethrown). Between attempts it waits an exponential backoff with "equal jitter" (half fixed,
 * half random), so receivers that come back are not hit by every sender at the same instant.
 * https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
 */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const random = opts.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    if (opts.signal?.aborted) throw new TransientError("shutting down before the delivery finished");
    opts.onAttempt?.(attempt);
    try {
      return await fn(attempt);
    } catch (err) {
      if (err instanceof PermanentError || attempt >= opts.attempts) throw err;
      const capped = Math.min(opts.backoff.maxMs, opts.backoff.initialMs * 2 ** (attempt - 1));
      await sleep(Math.round(capped / 2 + (capped / 2) * random()), opts.signal);
    }
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
