import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import {
  guardedLookup,
  OutboundAddressError,
  type OutboundPolicy,
  outboundPolicy,
  refusedRange,
  TransientError,
} from "@taskmesh/platform";
import webpush from "web-push";
import type { StoredPushSubscription } from "./notifications-store.js";
import { PermanentError, type RetryOptions, withRetries } from "./retry.js";

/** A VAPID key pair (RFC 8292), base64url as web-push writes them, and the contact it names. */
export interface VapidKeys {
  publicKey: string;
  privateKey: string;
  /** `mailto:` or `https:` contact the push service may use (the JWT's `sub`). */
  subject: string;
}

export interface PushSenderOptions {
  vapid: VapidKeys;
  /** Budget of one POST to a push service. */
  timeoutMs: number;
  attempts: number;
  backoff: { initialMs: number; maxMs: number };
  /** Where an endpoint may connect. Default: public addresses only. */
  policy?: OutboundPolicy;
}

/** What a send did, per subscription. */
export interface PushOutcome {
  delivered: string[];
  /** Subscriptions the push service no longer knows (404/410): the caller removes them. */
  expired: string[];
  failed: { id: string; detail: string }[];
}

/**
 * Why an endpoint cannot be registered, or undefined when it can: https only, except a plain
 * http endpoint whose host is an IP literal inside the allowed networks (a test's local receiver);
 * an IP literal must not be a refused range. Names are checked again when the socket connects.
 */
export function refusedEndpoint(endpoint: string, policy: OutboundPolicy = DEFAULT_POLICY): string | undefined {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return "is not a URL";
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const literal = isIP(host) !== 0;
  if (literal) {
    const why = refusedRange(host, policy);
    if (why) return `points at a ${why} address`;
  }
  if (url.protocol === "https:") return undefined;
  if (url.protocol === "http:" && literal && policy.allow.length > 0) return undefined;
  return "must be an https URL";
}

/**
 * Sends Web Push messages: the payload encrypted for each subscription (aes128gcm, RFC 8291)
 * and signed with VAPID (RFC 8292) by `web-push`, then POSTed by this class through the same
 * SSRF guard as webhooks (the address is checked when the socket connects). Per subscription: a
 * 201/2xx is delivered; 404 and 410 mean the subscription is gone (RFC 8030 7.3); 429, 5xx,
 * timeouts and network errors are retried with backoff and jitter like webhooks; other answers
 * are final. The same `topic` on every attempt lets the push service replace an undelivered
 * copy instead of showing two (RFC 8030 5.4).
 */
export class PushSender {
  readonly #opts: PushSenderOptions;

  constructor(opts: PushSenderOptions) {
    this.#opts = opts;
  }

  get publicKey(): string {
    return this.#opts.vapid.publicKey;
  }

  async send(req: {
    subscriptions: readonly StoredPushSubscription[];
    payload: unknown;
    /** ≤ 32 base64url characters. */
    topic: string;
    signal?: AbortSignal | undefined;
    onAttempt?: RetryOptions["onAttempt"];
  }): Promise<PushOutcome> {
    const out: PushOutcome = { delivered: [], expired: [], failed: [] };
    const body = JSON.stringify(req.payload);
    let attemptsSeen = 0;
    await Promise.all(
      req.subscriptions.map(async (s) => {
        try {
          const status = await withRetries(() => this.#sendOne(s, body, req.topic), {
            attempts: this.#opts.attempts,
            backoff: this.#opts.backoff,
            signal: req.signal,
            // One delivery-log attempt per round, however many devices.
            onAttempt: (n) => {
              if (n > attemptsSeen) {
                attemptsSeen = n;
                req.onAttempt?.(n);
              }
            },
          });
          if (status === "gone") out.expired.push(s.id);
          else out.delivered.push(s.id);
        } catch (err) {
          // Shutting down mid-retry: the event is redelivered and the push tried again.
          if (err instanceof TransientError) throw err;
          out.failed.push({ id: s.id, detail: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    return out;
  }

  async #sendOne(s: StoredPushSubscription, body: string, topic: string): Promise<"ok" | "gone"> {
    const details = webpush.generateRequestDetails(
      { endpoint: s.endpoint, keys: { p256dh: s.p256dh, auth: s.auth } },
      body,
      {
        vapidDetails: this.#opts.vapid,
        contentEncoding: "aes128gcm",
        // A day: a reminder older than that is stale.
        TTL: 86_400,
        topic,
        urgency: "high",
      },
    );
    const where = new URL(s.endpoint).origin;
    let code: number;
    try {
      code = await this.#post(s.endpoint, details.headers as Record<string, string | number>, details.body as Buffer);
    } catch (err) {
      if (err instanceof OutboundAddressError || (err as Error).cause instanceof OutboundAddressError)
        throw new PermanentError(`push to ${where} refused: ${(err as Error).message}`, { cause: err });
      throw new Error(`push to ${where} failed: ${(err as Error).message}`, { cause: err });
    }
    if (code >= 200 && code < 300) return "ok";
    if (code === 404 || code === 410) return "gone";
    const msg = `push to ${where} answered ${code}`;
    if (code === 429 || code >= 500) throw new Error(msg);
    throw new PermanentError(msg);
  }

  #post(endpoint: string, headers: Record<string, string | number>, body: Buffer | null): Promise<number> {
    const target = new URL(endpoint);
    const policy = this.#opts.policy ?? DEFAULT_POLICY;
    const why = refusedEndpoint(endpoint, policy);
    if (why) return Promise.reject(new OutboundAddressError(`the endpoint ${why}`));
    const send = target.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const r = send(target, {
        method: "POST",
        headers: { ...headers, "user-agent": "taskmesh-notifications" },
        lookup: guardedLookup(policy),
        signal: AbortSignal.timeout(this.#opts.timeoutMs),
      });
      r.on("response", (res: IncomingMessage) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      r.on("error", reject);
      r.end(body ?? undefined);
    });
  }
}

const DEFAULT_POLICY = outboundPolicy();
