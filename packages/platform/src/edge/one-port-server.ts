import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

/** What a client that speaks HTTP/2 without TLS ("prior knowledge", RFC 9113 §3.3) sends first. */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

type Handler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface OnePortServerOptions {
  /** A connection that has not sent enough bytes to tell its protocol within this time is closed. Default 5000 ms. */
  sniffTimeoutMs?: number;
  /** HTTP/1.1: all request headers must arrive within this time (slowloris). Default 10000 ms. */
  headersTimeoutMs?: number;
  /**
   * The whole request, body included, must arrive within this time (a trickled body), HTTP/1.1
   * and HTTP/2 alike; a response may then take as long as it needs (a watch stream). Default 30000 ms.
   */
  requestTimeoutMs?: number;
  /** HTTP/2: the client's SETTINGS frame must follow its preface within this time. Default 5000 ms. */
  settingsTimeoutMs?: number;
  /**
   * HTTP/2: a session with no open stream for this long is closed (GOAWAY); HTTP/1.1: a keep-alive
   * connection idle between requests for this long is closed. Default 30000 ms.
   */
  idleTimeoutMs?: number;
  /**
   * HTTP/2: while a session has open streams, the server PINGs it this often, so an idle watch
   * stream's connection stays up through proxies and NATs, and a dead peer is noticed (no PING
   * ack within another interval closes the session). Default 30000 ms.
   */
  keepAlivePingMs?: number;
  /** Connections one client address may hold at once; more are closed at accept. 0 = no cap. Default 100. */
  maxConnectionsPerAddress?: number;
}

/** Request paths whose request side stays open by design (bidirectional streams): exempt from requestTimeoutMs. */
const LONG_REQUESTS = /^\/grpc\.reflection\./;

/**
 * HTTP/1.1 and cleartext HTTP/2 (h2c prior knowledge) on one port, with one request handler.
 *
 * Why not `http2.createServer({ allowHTTP1: true })`: on cleartext, Node 20 answers an HTTP/1.1
 * request with a protocol error (the fallback only works with TLS, where ALPN picks the protocol;
 * checked: fetch() against it fails with HPE_INVALID_CONSTANT). So a plain `net.Server` accepts,
 * reads until the first bytes match or rule out the HTTP/2 preface, puts them back with
 * `socket.unshift()` and hands the socket to an http2 or an http1 server by emitting "connection".
 * Browsers and curl speak HTTP/1.1; grpcurl and `buf curl --http2-prior-knowledge` speak h2c.
 *
 * Slow clients cannot hold sockets (issue 12): see the timeouts in OnePortServerOptions, and a
 * cap on connections per client address.
 */
export class OnePortServer {
  readonly #tcp: net.Server;
  readonly #h1: http.Server;
  readonly #h2: http2.Http2Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #sniffTimeoutMs: number;
  readonly #perAddress = new Map<string, number>();
  readonly #maxPerAddress: number;

  constructor(handler: Handler, opts: OnePortServerOptions = {}) {
    this.#sniffTimeoutMs = opts.sniffTimeoutMs ?? 5000;
    this.#maxPerAddress = opts.maxConnectionsPerAddress ?? 100;
    const headersTimeout = opts.headersTimeoutMs ?? 10_000;
    const requestTimeout = opts.requestTimeoutMs ?? 30_000;
    const idleTimeout = opts.idleTimeoutMs ?? 30_000;
    this.#h1 = http.createServer(
      {
        headersTimeout,
        // Node allows no requestTimeout below headersTimeout; the body's own time is the rest.
        requestTimeout: Math.max(requestTimeout, headersTimeout),
        keepAliveTimeout: idleTimeout,
        // How often those two are checked (Node's default 30 s would let a slow client stay twice as long).
        connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 4))),
      },
      (req, res) => {
        drainInsteadOfDestroy(req);
        handler(req, res);
      },
    );
    // http.Server starts its connection tracking — headersTimeout/requestTimeout (slow-client
    // protection) and closeIdleConnections() — on its "listening" event. This one never listens
    // itself (the net.Server below does), so the event is emitted once here to start it.
    this.#h1.emit("listening");
    this.#h2 = http2.createServer(handler);
    this.#h2.on("session", (s: http2.ServerHttp2Session) => {
      this.#sessions.add(s);
      s.once("close", () => this.#sessions.delete(s));
      guardSession(s, {
        settingsTimeoutMs: opts.settingsTimeoutMs ?? 5000,
        idleTimeoutMs: idleTimeout,
        requestTimeoutMs: requestTimeout,
        keepAlivePingMs: opts.keepAlivePingMs ?? 30_000,
      });
    });
    // Half-open like the net.Server inside http.Server, which then decides itself what a client's
    // FIN means (http: abort the request); HTTP/2 sockets are switched back below.
    this.#tcp = net.createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
  }

  /** Binds host:port (0 picks a free port); resolves the bound port. */
  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#tcp.once("error", reject);
      this.#tcp.listen(port, host, () => {
        this.#tcp.off("error", reject);
        resolve();
      });
    });
    return (this.#tcp.address() as net.AddressInfo).port;
  }

  /**
   * Stops accepting, lets requests in flight finish (HTTP/2: GOAWAY then close once the streams
   * end; HTTP/1.1: close each connection as soon as it is idle), and after `graceMs` destroys what
   * is left. `beforeForce` runs just before that, e.g. to abort handlers so they answer first.
   */
  async close(graceMs: number, beforeForce?: () => void): Promise<void> {
    this.#tcp.close();
    this.#h1.close(); // stops its timers and closes idle keep-alive connections
    for (const s of this.#sessions) s.close();
    const deadline = Date.now() + graceMs;
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      this.#h1.closeIdleConnections(); // those whose last response just finished
      await new Promise((r) => setTimeout(r, 25));
    }
    if (this.#sockets.size > 0) {
      beforeForce?.();
      await new Promise((r) => setTimeout(r, 100));
      for (const s of this.#sockets) s.destroy();
    }
  }

  #accept(socket: net.Socket): void {
    const address = (socket.remoteAddress ?? "").replace(/^::ffff:(?=\d+\.)/, "");
    const held = this.#perAddress.get(address) ?? 0;
    if (this.#maxPerAddress > 0 && held >= this.#maxPerAddress) {
      socket.destroy();
      return;
    }
    this.#perAddress.set(address, held + 1);
    this.#sockets.add(socket);
    socket.once("close", () => {
      this.#sockets.delete(socket);
      const n = (this.#perAddress.get(address) ?? 1) - 1;
      if (n <= 0) this.#perAddress.delete(address);
      else this.#perAddress.set(address, n);
    });
    socket.on("error", () => socket.destroy()); // a reset before the protocol is known
    const timer = setTimeout(() => socket.destroy(), this.#sniffTimeoutMs);
    // A client that hangs up before its protocol is known: nobody else will close the socket
    // (half-open), and it would count against its address until the sniff timeout.
    const onEnd = () => socket.destroy();
    socket.once("end", onEnd);
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && head.length < H2_PREFACE.length) return; // could still be either: wait for more
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.pause();
      socket.unshift(head);
      if (isH2) {
        // The http2 session reads bytes already buffered on the socket on its next tick
        // (nodejs/node#34532); resuming here would emit them as "data" to no one.
        socket.allowHalfOpen = false; // as http2.createServer's own sockets: a FIN ends the session
        this.#h2.emit("connection", socket);
      } else {
        this.#h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  }
}

interface SessionLimits {
  settingsTimeoutMs: number;
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  keepAlivePingMs: number;
}

/**
 * The HTTP/2 side of the slow-client limits, which Node's http2 server does not have: a SETTINGS
 * deadline after the preface, an idle deadline while no stream is open (which also bounds a
 * header block trickled in CONTINUATION frames: its stream is not open until the block ends), a
 * deadline for each request to arrive whole, and PINGs while streams are open.
 */
function guardSession(session: http2.ServerHttp2Session, limits: SessionLimits): void {
  const settings = setTimeout(() => session.destroy(), limits.settingsTimeoutMs);
  session.once("remoteSettings", () => clearTimeout(settings));
  let open = 0;
  let idle: NodeJS.Timeout | undefined;
  const startIdle = () => {
    idle = setTimeout(() => {
      if (open === 0) session.close();
    }, limits.idleTimeoutMs);
  };
  startIdle();
  let awaitingAck = false;
  const pinger = setInterval(() => {
    if (open === 0 || session.closed || session.destroyed) return;
    if (awaitingAck) {
      session.destroy(); // the previous PING went unanswered for a whole interval: the peer is gone
      return;
    }
    awaitingAck = true;
    session.ping((err) => {
      if (!err) awaitingAck = false;
    });
  }, limits.keepAlivePingMs);
  session.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
    open++;
    clearTimeout(idle);
    let request: NodeJS.Timeout | undefined;
    const ended = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    if (!ended && !LONG_REQUESTS.test(String(headers[":path"] ?? ""))) {
      request = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), limits.requestTimeoutMs);
      stream.once("end", () => clearTimeout(request));
    }
    stream.once("close", () => {
      clearTimeout(request);
      if (--open === 0 && !session.closed) startIdle();
    });
  });
  session.once("close", () => {
    clearTimeout(settings);
    clearTimeout(idle);
    clearInterval(pinger);
  });
}

/** Most of an abandoned HTTP/1.1 request body the edge still reads and discards, and for how long. */
const DRAIN_MAX_BYTES = 8 * 1024 * 1024;
const DRAIN_MAX_MS = 10_000;

/**
 * When a handler gives up reading an HTTP/1.1 request body midway — connect-node refusing a
 * message over readMaxBytes stops iterating the request, and the iterator's return destroys it
 * (with an AbortError, after detaching the socket) — the rest of the body is never read: the HTTP
 * parser pushes it into the destroyed request, which refuses it, and stops reading the socket. The
 * client, still writing its body, stalls; closing the connection instead makes it fail with EPIPE
 * or a reset before it reads the answer (seen with a gRPC-Web client in another process: 79 of 300
 * oversized calls failed with "write EPIPE" instead of RESOURCE_EXHAUSTED). HTTP/2 needs nothing:
 * each request is its own stream.
 *
 * So that destroy of a body not yet complete is replaced by reading and discarding the rest: the
 * answer goes out, the client finishes sending and reads it, and the keep-alive connection stays
 * usable. Bounded: more than DRAIN_MAX_BYTES of the rest, or a body still arriving after
 * DRAIN_MAX_MS, and the connection is closed as before (Go's net/http reads up to 256 KiB).
 */
function drainInsteadOfDestroy(req: http.IncomingMessage): void {
  const destroy = req.destroy.bind(req);
  const socket = req.socket;
  let draining = false;
  req.destroy = (err?: Error) => {
    const abandoned = !err || err.name === "AbortError";
    if (!abandoned || draining || req.complete || req.destroyed) return destroy(err);
    draining = true;
    // Node's stream destroyer detaches a server request from its socket before destroying it;
    // reading on needs it back (IncomingMessage#_read resumes the socket).
    if (!req.socket) req.socket = socket;
    const cutOff = () => {
      destroy(err);
      socket.destroy();
    };
    let left = DRAIN_MAX_BYTES;
    const timer = setTimeout(cutOff, DRAIN_MAX_MS).unref();
    req.once("end", () => clearTimeout(timer));
    req.once("close", () => clearTimeout(timer));
    req.on("data", (chunk: Buffer) => {
      left -= chunk.length;
      if (left < 0) cutOff();
    });
    // The abandoned async iterator leaves its "readable" listener (it counts on destroy), which
    // would keep the stream paused: nobody reads this body any more, so drop it and let it flow.
    req.removeAllListeners("readable");
    req.resume();
    return req;
  };
}
