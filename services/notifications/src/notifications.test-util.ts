import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { webhookSignature } from "./webhook-sender.js";

/** Polls `fn` every 25 ms until it returns something truthy; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface ReceivedEmail {
  messageId: string;
  to: string[];
  subject: string;
  raw: string;
}

/** A real SMTP server (smtp-server) on 127.0.0.1, recording every message it accepts. */
export async function startSmtp(): Promise<{ url: string; messages: ReceivedEmail[]; stop(): Promise<void> }> {
  const messages: ReceivedEmail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const head = raw.split(/\r?\n\r?\n/)[0] ?? "";
        // Unfold continuation lines before reading headers (RFC 5322 §2.2.3).
        const unfolded = head.replace(/\r?\n[ \t]+/g, " ");
        const header = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "im").exec(unfolded)?.[1]?.trim() ?? "";
        messages.push({
          messageId: header("Message-ID"),
          to: session.envelope.rcptTo.map((r) => r.address),
          subject: header("Subject"),
          raw,
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface WebhookHit {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The X-Taskmesh-Signature header matched the HMAC of the body under the receiver's secret. */
  signatureValid: boolean;
  /** The status this hit was answered with. */
  status: number;
}

/**
 * A real HTTP server (node:http) receiving webhooks: it checks each signature against `secret`
 * and answers with the statuses scripted for the path (in order), then 200.
 */
export async function startWebhookReceiver(secret: string): Promise<{
  url(path: string): string;
  hits: WebhookHit[];
  script(path: string, statuses: number[]): void;
  stop(): Promise<void>;
}> {
  const hits: WebhookHit[] = [];
  const scripts = new Map<string, number[]>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const expected = Buffer.from(webhookSignature(secret, raw));
      const got = Buffer.from(String(req.headers["x-taskmesh-signature"] ?? ""));
      const path = req.url ?? "/";
      const status = scripts.get(path)?.shift() ?? 200;
      hits.push({
        path,
        headers: req.headers,
        body: raw.toString("utf8"),
        signatureValid: got.length === expected.length && timingSafeEqual(got, expected),
        status,
      });
      res.writeHead(status, { "content-type": "text/plain" }).end(status === 200 ? "ok" : "try later");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    hits,
    script: (path, statuses) => scripts.set(path, [...statuses]),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
