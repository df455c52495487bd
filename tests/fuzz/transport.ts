// Sends a fuzz case to the gateway as raw HTTP (node:http for HTTP/1.1, node:http2 for h2c) and
// reads the answer the way each protocol defines it, without a Connect or gRPC client library in
// between: gRPC status from trailers (or headers, Trailers-Only), gRPC-Web from the trailer frame,
// Connect unary from the HTTP status and JSON error body, Connect streaming from the end-stream
// message.
import http from "node:http";
import http2 from "node:http2";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";
import type { FuzzCase } from "./generator.js";

/** gRPC status codes by number, named as the Connect protocol spells them. */
export const CODE_NAMES = [
  "ok",
  "canceled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
] as const;

/** The edge's and the backends' request size limit. */
const HUGE_LIMIT = 1024 * 1024;

export interface Outcome {
  /**
   * A status code name ("ok", "invalid_argument", ...), or for answers without one: `http_<status>`,
   * `stream_open` (a server stream still running when we hung up, i.e. accepted),
   * `no_status` (a gRPC answer without grpc-status), `transport_error`, `timeout`,
   * `closed_over_limit` (the connection closed on a request over the size limits).
   */
  code: string;
  httpStatus?: number;
  /** The error message, or a transport error's description. */
  message: string;
  /** Everything an error answer carried as text (message, details, body), for the leak checks. */
  errorText: string;
  /** The response message of a successful unary call, as sent (JSON text or binary). */
  response?: { json: boolean; bytes: Uint8Array };
  ms: number;
}

export interface SendOptions {
  gatewayUrl: string;
  userToken: string;
  /**
   * The token for methods that end the caller's own session (UserService.Logout): a session of its
   * own, so a fuzzed Logout does not sign the fuzz user out of every later users call. @default userToken
   */
  sessionEndingToken?: string;
  /** A unary call without an answer after this long is a `timeout`. Default 15000. */
  timeoutMs?: number;
  /** A server stream that started well and is still open after this long counts as accepted. Default 1500. */
  streamOpenMs?: number;
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: Buffer;
  /** We hung up on a server stream that had answered 200 and was still going. */
  hungUp?: boolean;
}

export class Sender {
  readonly #opts: Required<SendOptions>;
  // A fresh connection per request: with keep-alive, a request sent on a connection the server is
  // closing at that moment (idle timeout, or after an early answer to a too-large body) fails with
  // ECONNRESET on the client side, which would be counted against the server.
  readonly #agent = new http.Agent({ keepAlive: false, maxSockets: 32 });

  constructor(opts: SendOptions) {
    this.#opts = { timeoutMs: 15_000, streamOpenMs: 1500, sessionEndingToken: opts.userToken, ...opts };
  }

  close(): void {
    this.#agent.destroy();
  }

  /** The request headers of `c` as sent (its auth role resolved to a header). */
  headersOf(c: FuzzCase): Record<string, string> {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(c.headers)) if (v !== "") h[k] = v;
    if (c.auth.kind === "user")
      h.authorization = `Bearer ${endsSession(c.method) ? this.#opts.sessionEndingToken : this.#opts.userToken}`;
    else if (c.auth.kind === "garbage") h.authorization = c.auth.header;
    return h;
  }

  async send(c: FuzzCase): Promise<Outcome> {
    const started = Date.now();
    const streaming = c.method.methodKind === "server_streaming";
    try {
      const raw = c.transport === "h2" ? await this.#h2(c, streaming) : await this.#h1(c, streaming);
      return { ...interpret(raw), ms: Date.now() - started };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const timeout = e.name === "TimeoutError";
      // A server may stop reading and close the connection once a request is over its limits
      // (body over 1 MiB, request head over Node's 16 KiB): the client then fails writing the
      // rest (EPIPE) or sees the reset before it reads the answer. That is a refusal, not a crash.
      const overLimit =
        c.body.length > HUGE_LIMIT ||
        c.path.length > 16 * 1024 ||
        Object.values(c.headers).some((v) => v.length > 8 * 1024);
      const refused = !timeout && overLimit && (e.code === "EPIPE" || e.code === "ECONNRESET");
      return {
        code: timeout ? "timeout" : refused ? "closed_over_limit" : "transport_error",
        message: `${e.code ?? e.name}: ${e.message}`,
        errorText: "",
        ms: Date.now() - started,
      };
    }
  }

  #h1(c: FuzzCase, streaming: boolean): Promise<RawAnswer> {
    const url = new URL(c.path, this.#opts.gatewayUrl);
    return new Promise((resolve, reject) => {
      let res: http.IncomingMessage | undefined;
      const chunks: Buffer[] = [];
      const { finish, fail } = settle(
        (hungUp) =>
          resolve({
            status: res?.statusCode ?? 0,
            headers: flat(res?.headers),
            trailers: flat(res?.trailers),
            body: Buffer.concat(chunks),
            hungUp,
          }),
        reject,
        () => req.destroy(),
        this.#opts,
        streaming,
      );
      const req = http.request(url, {
        method: c.httpMethod,
        agent: this.#agent,
        headers: {
          ...this.headersOf(c),
          ...(c.httpMethod === "GET" ? {} : { "content-length": String(c.body.length) }),
        },
      });
      req.on("error", fail);
      req.on("response", (r) => {
        res = r;
        r.on("data", (d: Buffer) => chunks.push(d));
        r.on("end", () => finish(false));
        r.on("error", fail);
      });
      if (c.httpMethod === "GET") req.end();
      else req.end(Buffer.from(c.body));
    });
  }

  #h2(c: FuzzCase, streaming: boolean): Promise<RawAnswer> {
    const url = new URL(c.path, this.#opts.gatewayUrl);
    return new Promise((resolve, reject) => {
      let session: http2.ClientHttp2Session | undefined;
      let stream: http2.ClientHttp2Stream | undefined;
      let status = 0;
      let headers: Record<string, string> = {};
      let trailers: Record<string, string> = {};
      const chunks: Buffer[] = [];
      const { finish, fail } = settle(
        (hungUp) => resolve({ status, headers, trailers, body: Buffer.concat(chunks), hungUp }),
        reject,
        () => session?.destroy(),
        this.#opts,
        streaming,
      );
      // One connection per case: what a case does to its connection (a protocol error, a reset)
      // cannot be blamed on the next one, and cancelled server streams never add up to HTTP/2
      // rapid-reset protection (ENHANCE_YOUR_CALM) on a shared connection.
      session = http2.connect(this.#opts.gatewayUrl);
      session.on("error", () => {}); // surfaces on the stream
      try {
        stream = session.request(
          { ":method": c.httpMethod, ":path": url.pathname + url.search, ...this.headersOf(c) },
          { endStream: c.httpMethod === "GET" },
        );
      } catch (e) {
        fail(e as Error);
        return;
      }
      const s = stream;
      s.on("response", (h) => {
        status = Number(h[":status"]);
        headers = flat(h);
      });
      s.on("trailers", (t) => {
        trailers = flat(t);
      });
      s.on("data", (d: Buffer) => chunks.push(d));
      // The answer is complete at the end of the response, even when the server answered before
      // reading all of a (too large) request and our side is still sending.
      s.on("end", () => finish(false));
      s.on("error", () => {}); // reported through "close" with its RST code
      s.on("close", () => {
        if (status !== 0 && (headers["grpc-status"] !== undefined || trailers["grpc-status"] !== undefined))
          return finish(false);
        const e = new Error(
          `stream closed with RST_STREAM code ${s.rstCode} (HTTP status ${status || "none"})`,
        ) as NodeJS.ErrnoException;
        e.code = "ERR_HTTP2_STREAM_RESET";
        fail(e);
      });
      if (c.httpMethod !== "GET") s.end(Buffer.from(c.body));
    });
  }
}

/**
 * Settles a request once: `finish` with the answer, `fail` with an error; a timeout fails it; a
 * server stream still open after `streamOpenMs` is finished as "hung up" (the call was accepted).
 */
function settle(
  resolve: (hungUp: boolean) => void,
  reject: (e: Error) => void,
  abort: () => void,
  opts: Required<SendOptions>,
  streaming: boolean,
) {
  let settled = false;
  const timers: NodeJS.Timeout[] = [];
  const once = (f: () => void) => {
    if (settled) return;
    settled = true;
    for (const t of timers) clearTimeout(t);
    f();
    abort();
  };
  const finish = (hungUp: boolean) => once(() => resolve(hungUp));
  const fail = (e: Error) => once(() => reject(e));
  timers.push(setTimeout(() => fail(timeoutError(opts.timeoutMs)), opts.timeoutMs));
  if (streaming) timers.push(setTimeout(() => finish(true), opts.streamOpenMs));
  return { finish, fail };
}

function timeoutError(ms: number): Error {
  const e = new Error(`no answer within ${ms} ms`);
  e.name = "TimeoutError";
  return e;
}

function flat(h: Record<string, string | string[] | number | undefined> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {}))
    if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v);
  return out;
}

function decodeGrpcMessage(m: string | undefined): string {
  if (!m) return "";
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}

function grpcOutcome(
  statusText: string,
  msg: string | undefined,
  details: string | undefined,
  raw: RawAnswer,
  firstMessage?: Buffer,
): Omit<Outcome, "ms"> {
  const n = Number(statusText);
  const code = Number.isInteger(n) && CODE_NAMES[n] ? CODE_NAMES[n] : `grpc_status_${statusText}`;
  const message = decodeGrpcMessage(msg);
  const detailsText = details ? Buffer.from(details, "base64").toString("latin1") : "";
  return {
    code,
    httpStatus: raw.status,
    message,
    errorText: code === "ok" ? "" : `${message}\n${detailsText}`,
    ...(code === "ok" && firstMessage ? { response: { json: false, bytes: firstMessage } } : {}),
  };
}

/** A response message as sent, uncompressed (gRPC and Connect servers compress when the client accepts it). */
function inflate(bytes: Buffer, encoding: string | undefined): Buffer {
  switch (encoding) {
    case "gzip":
      return gunzipSync(bytes);
    case "br":
      return brotliDecompressSync(bytes);
    case "deflate":
      return inflateSync(bytes);
    default:
      return bytes;
  }
}

/** The first data message of an enveloped body, decompressed when its flag says so. */
function firstMessage(frames: Array<[number, Buffer]>, encoding: string | undefined): Buffer | undefined {
  const data = frames.find(([f]) => (f & 0x80) === 0 && (f & 0x02) === 0);
  if (!data) return undefined;
  try {
    return (data[0] & 0x01) !== 0 ? inflate(data[1], encoding) : data[1];
  } catch {
    return undefined;
  }
}

/** Envelopes of a gRPC / gRPC-Web / Connect streaming body: [flags, payload][]. */
function envelopes(body: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  let o = 0;
  while (o + 5 <= body.length) {
    const flags = body[o] as number;
    const len = body.readUInt32BE(o + 1);
    out.push([flags, body.subarray(o + 5, o + 5 + len)]);
    o += 5 + len;
  }
  return out;
}

export function interpret(raw: RawAnswer): Omit<Outcome, "ms"> {
  if (raw.hungUp && raw.status === 0) return { code: "stream_open", message: "", errorText: "" };
  const ct = raw.headers["content-type"] ?? "";
  const grpcStatus = raw.trailers["grpc-status"] ?? raw.headers["grpc-status"];
  if (ct.startsWith("application/grpc-web")) {
    if (raw.headers["grpc-status"] !== undefined)
      return grpcOutcome(
        raw.headers["grpc-status"],
        raw.headers["grpc-message"],
        raw.headers["grpc-status-details-bin"],
        raw,
      );
    const body = ct.startsWith("application/grpc-web-text")
      ? Buffer.from(raw.body.toString("latin1"), "base64")
      : raw.body;
    const frames = envelopes(body);
    const trailer = frames.find(([f]) => (f & 0x80) !== 0);
    if (!trailer)
      return raw.hungUp
        ? { code: "stream_open", message: "", errorText: "" }
        : {
            code: "no_status",
            httpStatus: raw.status,
            message: "gRPC-Web answer without a trailer frame",
            errorText: "",
          };
    const t: Record<string, string> = {};
    for (const line of trailer[1].toString("latin1").split("\r\n")) {
      const i = line.indexOf(":");
      if (i > 0) t[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    return grpcOutcome(
      t["grpc-status"] ?? "?",
      t["grpc-message"],
      t["grpc-status-details-bin"],
      raw,
      firstMessage(frames, raw.headers["grpc-encoding"]),
    );
  }
  if (grpcStatus !== undefined) {
    const first = firstMessage(envelopes(raw.body), raw.headers["grpc-encoding"]);
    return grpcOutcome(
      grpcStatus,
      raw.trailers["grpc-message"] ?? raw.headers["grpc-message"],
      raw.trailers["grpc-status-details-bin"] ?? raw.headers["grpc-status-details-bin"],
      raw,
      first,
    );
  }
  if (ct.startsWith("application/grpc")) {
    return raw.hungUp
      ? { code: "stream_open", message: "", errorText: "" }
      : {
          code: "no_status",
          httpStatus: raw.status,
          message: "gRPC answer without grpc-status",
          errorText: raw.body.toString("utf8"),
        };
  }
  if (ct.startsWith("application/connect+") && raw.status === 200) {
    const frames = envelopes(raw.body);
    const end = frames.find(([f]) => (f & 0x02) !== 0);
    if (!end)
      return raw.hungUp
        ? { code: "stream_open", message: "", errorText: "" }
        : { code: "no_status", httpStatus: 200, message: "Connect stream without end-stream message", errorText: "" };
    const text = end[1].toString("utf8");
    let parsed: { error?: { code?: string; message?: string } } = {};
    try {
      parsed = JSON.parse(text);
    } catch {}
    if (!parsed.error) return { code: "ok", httpStatus: 200, message: "", errorText: "" };
    return {
      code: parsed.error.code ?? "unknown",
      httpStatus: 200,
      message: parsed.error.message ?? "",
      errorText: text,
    };
  }
  if (raw.status === 200) {
    let bytes: Buffer | undefined;
    try {
      bytes = inflate(raw.body, raw.headers["content-encoding"]);
    } catch {}
    return {
      code: "ok",
      httpStatus: 200,
      message: "",
      errorText: "",
      ...(bytes ? { response: { json: ct.includes("json"), bytes } } : {}),
    };
  }
  const text = raw.body.toString("utf8");
  try {
    const j = JSON.parse(text) as { code?: unknown; message?: unknown };
    if (typeof j.code === "string")
      return { code: j.code, httpStatus: raw.status, message: String(j.message ?? ""), errorText: text };
  } catch {}
  return { code: `http_${raw.status}`, httpStatus: raw.status, message: text.slice(0, 200), errorText: text };
}

/** A method whose success ends the caller's own session, so later calls with its token are refused. */
export function endsSession(method: { name: string; parent: { typeName: string } }): boolean {
  return method.parent.typeName === "taskmesh.users.v1.UserService" && method.name === "Logout";
}
