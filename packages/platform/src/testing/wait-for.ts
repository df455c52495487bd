/** How `waitFor` polls. */
export interface WaitForOptions {
  /** Give up after this long. Default 20000 ms (a passing test waits only as long as it must). */
  timeoutMs?: number;
  /** Pause between probes. Default 25 ms. */
  intervalMs?: number;
  /** More to say when it gives up (e.g. the state that was seen), appended to the message. */
  detail?: () => string;
}

/**
 * Polls `probe` until it returns something truthy and resolves that value; after `timeoutMs`
 * fails naming `what`. For tests of asynchronous effects (an event applied, a span exported), so
 * they wait for the effect instead of sleeping a fixed time.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  opts: number | WaitForOptions = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 20_000, intervalMs = 25, detail } = typeof opts === "number" ? { timeoutMs: opts } : opts;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail?.() ?? ""}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
