// One fuzz case = one HTTP request to the gateway, decided entirely by (run seed, case index):
// which public method, which protocol and content type (right or wrong), which credentials, and a
// body from payload.ts. Tokens are referred to by role and filled in when sending, so a printed
// case can be replayed with a fresh user's token.
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { binaryBody, framed } from "./payload-binary.js";
import { jsonBody } from "./payload-json.js";
import type { Mode } from "./payload-mode.js";
import { Rng } from "./prng.js";
import { envelope } from "./wire.js";

export type Protocol =
  | "connect-json"
  | "connect-proto"
  | "connect-get"
  | "connect-stream-json"
  | "connect-stream-proto"
  | "grpc"
  | "grpc-json"
  | "grpc-web"
  | "grpc-web-text"
  | "wrong-content-type";

/** `user`: the fuzz user's valid token; `none`: no header; otherwise the literal header value. */
export type Auth = { kind: "user" } | { kind: "none" } | { kind: "garbage"; header: string };

export interface FuzzCase {
  seed: number;
  index: number;
  method: DescMethod;
  protocol: Protocol;
  /** HTTP/2 without TLS (prior knowledge) or HTTP/1.1. */
  transport: "h2" | "h1";
  httpMethod: string;
  path: string;
  headers: Record<string, string>;
  auth: Auth;
  body: Uint8Array;
  /** What is odd about this request, in a few words each. */
  labels: string[];
}

const enc = new TextEncoder();

export function generateCase(seed: number, index: number, methods: readonly DescMethod[]): FuzzCase {
  const rng = Rng.forCase(seed, index);
  const method = rng.pick(methods);
  const labels: string[] = [];
  const streaming = method.methodKind === "server_streaming";
  const readOnly = method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
  // Two in five cases are well-formed but for one field (or for none), so that they get past
  // parsing and validation into the services' own code; the rest are fuzzed throughout.
  const mode: Mode = rng.chance(0.4)
    ? { kind: "oneBadField", target: rng.chance(0.3) ? "" : rng.pick(fieldNames(method)) }
    : { kind: "wild" };
  const sane = mode.kind === "oneBadField";
  if (sane) labels.push(mode.target ? `only ${mode.target} fuzzed` : "well-formed");
  const protocol = sane
    ? rng.weighted<Protocol>([
        [streaming ? 1 : 10, "connect-json"],
        [streaming ? 1 : 6, "connect-proto"],
        [streaming ? 8 : 0, "connect-stream-json"],
        [8, "grpc"],
        [5, "grpc-web"],
      ])
    : rng.weighted<Protocol>([
        [streaming ? 4 : 22, "connect-json"],
        [streaming ? 3 : 15, "connect-proto"],
        [readOnly ? 5 : 1, "connect-get"],
        [streaming ? 18 : 2, "connect-stream-json"],
        [streaming ? 14 : 2, "connect-stream-proto"],
        [22, "grpc"],
        [3, "grpc-json"],
        [14, "grpc-web"],
        [4, "grpc-web-text"],
        [6, "wrong-content-type"],
      ]);
  const frame = (msg: Uint8Array) => (sane ? envelope(0, msg) : framed(rng, msg, labels));
  const path = `/${method.parent.typeName}/${method.name}`;
  const headers: Record<string, string> = {};
  let body: Uint8Array;
  let httpMethod = "POST";
  let transport: "h1" | "h2" = "h1";
  let finalPath = path;

  switch (protocol) {
    case "connect-json":
      headers["content-type"] = rng.weighted([
        [8, "application/json"],
        [1, "application/json; charset=utf-8"],
        [1, "application/json; charset=latin1"],
      ]);
      if (rng.chance(0.7)) headers["connect-protocol-version"] = "1";
      body = jsonBody(rng, method.input, labels, mode);
      transport = rng.chance(0.15) ? "h2" : "h1";
      break;
    case "connect-proto":
      headers["content-type"] = "application/proto";
      headers["connect-protocol-version"] = "1";
      body = binaryBody(rng, method.input, labels, mode);
      transport = rng.chance(0.15) ? "h2" : "h1";
      break;
    case "connect-get": {
      httpMethod = "GET";
      const binary = rng.chance(0.4);
      const msg = binary ? binaryBody(rng, method.input, labels, mode) : jsonBody(rng, method.input, labels, mode);
      const q = new URLSearchParams();
      q.set(
        "encoding",
        rng.weighted([
          [8, binary ? "proto" : "json"],
          [1, "xml"],
          [1, binary ? "json" : "proto"],
        ]),
      );
      if (binary || rng.chance(0.3)) {
        q.set("base64", "1");
        q.set("message", Buffer.from(msg).toString("base64url"));
      } else {
        q.set("message", Buffer.from(msg).toString("latin1"));
      }
      if (rng.chance(0.8)) q.set("connect", rng.pick(["v1", "v1", "v2", ""]));
      finalPath = `${path}?${q.toString()}`;
      body = new Uint8Array(0);
      break;
    }
    case "connect-stream-json":
    case "connect-stream-proto": {
      const json = protocol === "connect-stream-json";
      headers["content-type"] = json ? "application/connect+json" : "application/connect+proto";
      headers["connect-protocol-version"] = "1";
      const msg = json ? jsonBody(rng, method.input, labels, mode) : binaryBody(rng, method.input, labels, mode);
      body = frame(msg);
      transport = rng.chance(0.3) ? "h2" : "h1";
      break;
    }
    case "grpc":
    case "grpc-json": {
      const json = protocol === "grpc-json";
      headers["content-type"] = json
        ? "application/grpc+json"
        : rng.pick(["application/grpc", "application/grpc+proto"]);
      headers.te = "trailers";
      const msg = json ? jsonBody(rng, method.input, labels, mode) : binaryBody(rng, method.input, labels, mode);
      body = frame(msg);
      transport = !sane && rng.chance(0.03) ? "h1" : "h2";
      if (transport === "h1") labels.push("gRPC over HTTP/1.1");
      break;
    }
    case "grpc-web":
    case "grpc-web-text": {
      const text = protocol === "grpc-web-text";
      headers["content-type"] = text
        ? "application/grpc-web-text"
        : rng.pick(["application/grpc-web", "application/grpc-web+proto"]);
      headers["x-grpc-web"] = "1";
      const framedBody = frame(binaryBody(rng, method.input, labels, mode));
      body = text
        ? enc.encode(rng.chance(0.1) ? "!!!not base64!!!" : Buffer.from(framedBody).toString("base64"))
        : framedBody;
      break;
    }
    case "wrong-content-type": {
      headers["content-type"] = rng.pick([
        "text/plain",
        "application/xml",
        "",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json+proto",
        "application/grpc-web+json",
        "application/protobuf",
        "application/octet-stream",
        "application/proto; charset=utf-8",
      ]);
      const binary = rng.chance(0.5);
      body = binary ? binaryBody(rng, method.input, labels, mode) : jsonBody(rng, method.input, labels, mode);
      if (rng.chance(0.1)) httpMethod = rng.pick(["PUT", "PATCH", "DELETE"]);
      transport = rng.chance(0.2) ? "h2" : "h1";
      break;
    }
  }

  // Headers a client may get wrong.
  if (!sane && rng.chance(0.12)) {
    const [k, v] = rng.pick<[string, string]>([
      ["connect-timeout-ms", rng.pick(["abc", "-1", "0", "99999999999", "1.5"])],
      ["grpc-timeout", rng.pick(["1n", "abc", "99999999H", "-1S", "100000000S", ""])],
      ["connect-protocol-version", rng.pick(["2", "", "1.0"])],
      ["content-encoding", rng.pick(["gzip", "br", "deflate", "x-unknown"])],
      ["connect-content-encoding", rng.pick(["gzip", "br", "x-unknown"])],
      ["grpc-encoding", rng.pick(["gzip", "snappy", "identity", "x-unknown"])],
      ["grpc-accept-encoding", ", ,,gzip;q=x"],
      ["x-user-id", "00000000-0000-0000-0000-000000000001"],
      ["grpc-status", "0"],
    ]);
    headers[k] = v;
    labels.push(`header ${k}: ${JSON.stringify(v)}`);
  }

  const auth = rng.weighted<Auth>([
    [sane ? 95 : 75, { kind: "user" }],
    [15, { kind: "none" }],
    [
      10,
      {
        kind: "garbage",
        header: rng.pick([
          "Bearer not-a-jwt",
          "Bearer a.b.c",
          "Bearer ",
          "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
          "Basic dXNlcjpwYXNz",
          `Bearer ${"A".repeat(8000)}`,
          "bearer",
          "Bearer \u00ff\u00fe",
        ]),
      },
    ],
  ]);
  if (auth.kind !== "user")
    labels.push(`auth:${auth.kind === "none" ? "none" : JSON.stringify(auth.header.slice(0, 40))}`);

  return { seed, index, method, protocol, transport, httpMethod, path: finalPath, headers, auth, body, labels };
}

/** Names of the fields of a method's input, nested messages included (the targets of one-bad-field cases). */
function fieldNames(method: DescMethod): string[] {
  const names = new Set<string>();
  const walk = (m: DescMethod["input"], depth: number) => {
    for (const f of m.fields) {
      names.add(f.name);
      const sub =
        f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") ? f.message : undefined;
      if (sub && depth < 3 && !sub.typeName.startsWith("google.protobuf.")) walk(sub, depth + 1);
    }
  };
  walk(method.input, 0);
  return names.size > 0 ? [...names] : [""];
}
