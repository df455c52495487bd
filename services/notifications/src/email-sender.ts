import nodemailer from "nodemailer";
import { PermanentError, type RetryOptions, withRetries } from "./retry.js";

export interface EmailSenderOptions {
  /** smtp://host:port or smtps://user:pass@host:port. */
  smtpUrl: string;
  from: string;
  /** Budget of one SMTP exchange (connect, greeting, each command). */
  timeoutMs: number;
  attempts: number;
  backoff: { initialMs: number; maxMs: number };
}

/** The Message-ID of the email for a source event: the same on every attempt and every redelivery. */
export function emailMessageId(eventId: string): string {
  return `<${eventId}.reminder@notifications.taskmesh>`;
}

/**
 * Sends email over SMTP with nodemailer, one connection per message (reminders are few; a pool
 * would hold sockets open for nothing). Network errors and 4yz replies are retried with backoff;
 * 5yz replies (RFC 5321: permanent) are not, except 503 (bad sequence: a new session may pass).
 * The Message-ID is derived from the event id, so a message sent twice (the process died between
 * sending and recording it) is recognisably the same message to servers and mail clients.
 */
export class EmailSender {
  readonly #opts: EmailSenderOptions;
  readonly #transport;

  constructor(opts: EmailSenderOptions) {
    this.#opts = opts;
    this.#transport = nodemailer.createTransport({
      url: opts.smtpUrl,
      connectionTimeout: opts.timeoutMs,
      greetingTimeout: opts.timeoutMs,
      socketTimeout: opts.timeoutMs,
    });
  }

  async send(req: {
    to: string;
    subject: string;
    text: string;
    eventId: string;
    signal?: AbortSignal | undefined;
    onAttempt?: RetryOptions["onAttempt"];
  }): Promise<{ messageId: string; attempts: number }> {
    const messageId = emailMessageId(req.eventId);
    let attempts = 0;
    await withRetries(
      async () => {
        attempts++;
        try {
          await this.#transport.sendMail({
            from: this.#opts.from,
            to: req.to,
            subject: req.subject,
            text: req.text,
            messageId,
            headers: { "X-Taskmesh-Event-Id": req.eventId },
          });
        } catch (err) {
          const e = err as { responseCode?: number; code?: string; message?: string };
          const msg = `SMTP: ${e.message ?? String(err)}`;
          const code = e.responseCode ?? 0;
          if ((code >= 500 && code !== 503) || e.code === "EENVELOPE") throw new PermanentError(msg, { cause: err });
          throw new Error(msg, { cause: err });
        }
      },
      {
        attempts: this.#opts.attempts,
        backoff: this.#opts.backoff,
        signal: req.signal,
        onAttempt: req.onAttempt,
      },
    );
    return { messageId, attempts };
  }

  close(): void {
    this.#transport.close();
  }
}
