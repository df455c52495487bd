import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { JWKS_PATH, type Logger } from "@taskmesh/platform";
import type { JSONWebKeySet } from "jose";

export interface JwksServerOptions {
  /** The current public key set (read on every request, so a rotation shows at once). */
  jwks: () => JSONWebKeySet;
  /** Readiness for /healthz (e.g. the database answers). Default: always ready. */
  ready?: () => boolean;
  logger: Logger;
}

/**
 * Plain HTTP for what cannot speak gRPC: the JWKS document that the gateway's and backends'
 * `createRemoteJWKSet` and Istio's RequestAuthentication (`jwksUri`) fetch, and `/healthz`.
 *
 * Cache-Control max-age=300: verifiers may cache the set for 5 minutes; after a rotation the
 * old key stays published, so a cached set never rejects a valid token, and jose's remote set
 * re-fetches on an unknown `kid` anyway. An ETag lets a re-fetch be a 304.
 */
export class JwksServer {
  readonly server: Server;
  readonly #opts: JwksServerOptions;

  constructor(opts: JwksServerOptions) {
    this.#opts = opts;
    this.server = createServer((req, res) => this.#handle(req, res));
    // Keep-alive connections would hold close() open; a verifier re-connects cheaply.
    this.server.keepAliveTimeout = 5_000;
  }

  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    this.server.listen(port, host);
    await once(this.server, "listening");
    const addr = this.server.address();
    if (typeof addr !== "object" || !addr) throw new Error("JWKS server has no address");
    this.#opts.logger.info({ port: addr.port, path: JWKS_PATH }, "jwks server listening");
    return addr.port;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await closed;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? "/").split("?")[0];
    const headOnly = req.method === "HEAD";
    if (path !== JWKS_PATH && path !== "/healthz") {
      this.#send(res, 404, "text/plain", "not found\n");
    } else if (req.method !== "GET" && !headOnly) {
      res.setHeader("Allow", "GET, HEAD");
      this.#send(res, 405, "text/plain", "method not allowed\n");
    } else if (path === "/healthz") {
      const ready = this.#opts.ready?.() ?? true;
      this.#send(res, ready ? 200 : 503, "text/plain", ready ? "ok\n" : "not ready\n", headOnly);
    } else {
      const body = JSON.stringify(this.#opts.jwks());
      const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
      res.setHeader("Cache-Control", "public, max-age=300");
      res.setHeader("ETag", etag);
      if (req.headers["if-none-match"] === etag) {
        res.writeHead(304);
        res.end();
      } else {
        this.#send(res, 200, "application/json", body, headOnly);
      }
    }
  }

  #send(res: ServerResponse, status: number, type: string, body: string, headOnly = false): void {
    res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
    res.end(headOnly ? undefined : body);
  }
}
