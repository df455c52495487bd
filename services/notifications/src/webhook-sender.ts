import { createHmac } from "node:crypto";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import {
  guardedLookup,
  OutboundAddressError,
  type OutboundPolicy,
  outboundPolicy,
  refusedRange,
} from "@taskmesh/platform";
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
  /** Where a webhook may connect. Default: public addresses only (no loopback, private, link-local, …). */
  policy?: OutboundPolicy;
}

/**
 * POSTs JSON to a user's webhook, signed with HMAC-SHA256, retried with backoff and jitter on 5xx
 * answers, timeouts and network errors (bounded attempts); any other answer that is not 2xx
 * (4xx, and 3xx: redirects are not followed) is final. Every attempt carries the same
 * Idempotency-Key, so a receiver can drop an attempt it already processed (the POST whose answer
 * was lost, or a redelivery after this process died between sending and recording).
 *
 * SSRF: the address is checked when the socket connects (a custom `lookup`), not only when the
 * user saved the URL, so a name that resolves to a public address at save time and to 127.0.0.1
 * or 169.254.169.254 later (DNS rebinding) is still refused; a refusal is final (no retry).
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
        let code: number;
        try {
          code = await this.#post(req.url, headers, body);
        } catch (err) {
          if (err instanceof OutboundAddressError || (err as Error).cause instanceof OutboundAddressError)
            throw new PermanentError(`POST ${req.url} refused: ${describe(err)}`, { cause: err });
          throw new Error(`POST ${req.url} failed: ${describe(err)}`, { cause: err });
        }
        if (code >= 200 && code < 300) return code;
        const msg = `POST ${req.url} answered ${code}`;
        if (code >= 500) throw new Error(msg);
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

  /** One POST; the answer's status. Redirects are not followed (a 3xx is just an answer). */
  #post(url: string, headers: Record<string, string>, body: string): Promise<number> {
    const target = new URL(url);
    const policy = this.#opts.policy ?? DEFAULT_POLICY;
    const host = target.hostname.replace(/^\[|\]$/g, "");
    // An IP literal is connected to without a lookup, so it is checked here.
    const why = isIP(host) ? refusedRange(host, policy) : undefined;
    if (why) return Promise.reject(new OutboundAddressError(`${target.hostname} is a ${why} address`));
    const send = target.protocol === "https:" ? httpsRequest : target.protocol === "http:" ? httpRequest : undefined;
    if (!send) return Promise.reject(new OutboundAddressError(`${target.protocol} is not http(s)`));
    return new Promise((resolve, reject) => {
      const r = send(target, {
        method: "POST",
        headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
        lookup: guardedLookup(policy),
        signal: AbortSignal.timeout(this.#opts.timeoutMs),
      });
      r.on("response", (res: IncomingMessage) => {
        // The body is not used; reading it lets the connection be reused.
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      r.on("error", reject);
      r.end(body);
    });
  }
}

const DEFAULT_POLICY = outboundPolicy();

function describe(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === "AbortError" && err.cause instanceof Error && err.cause.name === "TimeoutError")
      return "timed out";
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return err.name === "TimeoutError" ? "timed out" : `${err.message}${cause}`;
  }
  return String(err);
}
