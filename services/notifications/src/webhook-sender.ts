import { createHmac } from "node:crypto";
import { PermanentError, type RetryOptions, withRetries } from "./retry.js";

/** Header carrying `sha256=<hex HMAC-SHA256 of the raw body>` under WEBHOOK_SECRET. */
export const SIGNATURE_HEADER = "X-Taskmesh-Signature";
/** Header carrying `<source event id>:webhook`: the same on every attempt and every redelivery. */
export const IDEMPOTENCY_HEADER = "Idempotency-Key";

/** The signature a receiver recomputes over the exact bytes it received. */
export function webhookSignature(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

export interface WebhookSenderOptions {
  secret: string;
  /** Budget of one POST (connect + answer). */
  timeoutMs: number;
  attempts: number;
  backoff: { initialMs: number; maxMs: number };
}

/**
 * POSTs JSON to a user's webhook, signed with HMAC-SHA256, retried with backoff and jitter on 5xx
 * answers, timeouts and network errors (bounded attempts); any other answer that is not 2xx
 * (4xx, and 3xx: redirects are not followed) is final. Every attempt carries the same
 * Idempotency-Key, so a receiver can drop an attempt it already processed (the POST whose answer
 * was lost, or a redelivery after this process died between sending and recording).
 */
export class WebhookSender {
  readonly #opts: WebhookSenderOptions;

  constructor(opts: WebhookSenderOptions) {
    this.#opts = opts;
  }

  async send(req: {
    url: string;
    payload: unknown;
    eventId: string;
    signal?: AbortSignal | undefined;
    onAttempt?: RetryOptions["onAttempt"];
  }): Promise<{ status: number; attempts: number }> {
    const body = JSON.stringify(req.payload);
    const headers = {
      "content-type": "application/json",
      "user-agent": "taskmesh-notifications",
      [SIGNATURE_HEADER]: webhookSignature(this.#opts.secret, body),
      [IDEMPOTENCY_HEADER]: `${req.eventId}:webhook`,
    };
    let attempts = 0;
    const status = await withRetries(
      async () => {
        attempts++;
        let res: Response;
        try {
          res = await fetch(req.url, {
            method: "POST",
            headers,
            body,
            redirect: "manual",
            signal: AbortSignal.timeout(this.#opts.timeoutMs),
          });
        } catch (err) {
          throw new Error(`POST ${req.url} failed: ${describe(err)}`, { cause: err });
        }
        // The body is not used; reading it lets the connection be reused.
        await res.arrayBuffer().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) return res.status;
        const msg = `POST ${req.url} answered ${res.status}`;
        if (res.status >= 500) throw new Error(msg);
        throw new PermanentError(msg);
      },
      {
        attempts: this.#opts.attempts,
        backoff: this.#opts.backoff,
        signal: req.signal,
        onAttempt: req.onAttempt,
      },
    );
    return { status, attempts };
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return err.name === "TimeoutError" ? "timed out" : `${err.message}${cause}`;
  }
  return String(err);
}
