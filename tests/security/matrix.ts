// Helpers of the security matrix: every service from the generated descriptors (so a new method
// is in the matrix without anyone remembering to add it), one call function for every protocol
// that records each error message it sees, and user tokens signed with one property changed.
import { createHmac, randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  create,
  type DescMethod,
  type DescService,
  fromJson,
  type JsonObject,
  type JsonValue,
  toJson,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { USER_TOKEN_ALG } from "@taskmesh/platform";
import { REPO_ROOT } from "@taskmesh/runner";
import { importJWK, type JWK, SignJWT } from "jose";

export type Protocol = "grpc" | "grpc-web" | "connect";
export const PROTOCOLS: readonly Protocol[] = ["grpc", "grpc-web", "connect"];

/** Every service in packages/gen (taskmesh.*), from the generated descriptors. */
export async function generatedServices(): Promise<DescService[]> {
  const root = join(REPO_ROOT, "packages/gen/src/taskmesh");
  const out: DescService[] = [];
  for (const domain of readdirSync(root).sort()) {
    for (const file of readdirSync(join(root, domain, "v1")).sort()) {
      if (!file.endsWith("_pb.ts")) continue;
      const mod = (await import(`@taskmesh/gen/taskmesh/${domain}/v1/${file.slice(0, -3)}`)) as Record<string, unknown>;
      for (const v of Object.values(mod))
        if (typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "service")
          out.push(v as DescService);
    }
  }
  return out;
}

export const isInternal = (s: DescService) => s.name.endsWith("InternalService");
/** "taskmesh.tasks.v1.TaskService/GetTask" */
export const pathOf = (m: DescMethod) => `${m.parent.typeName}/${m.name}`;
/** The service that serves a taskmesh.<domain>.v1 service on its own port (the gateway serves taskmesh.gateway). */
export const ownerOf = (s: DescService) => s.typeName.split(".")[1] as string;

/** Top-level fields of a method's request that name a resource: `*_id` / `*_ids`. */
export function resourceIdFields(m: DescMethod): string[] {
  return m.input.fields.filter((f) => /_ids?$/.test(f.name)).map((f) => f.name);
}

export type Outcome =
  | { ok: true; code: "OK"; body: JsonObject; messages?: JsonObject[] }
  | { ok: false; code: string; message: string };

/** Every error message any call answered, with where it came from (checked for leaks at the end). */
export const seenErrors: Array<{ where: string; message: string }> = [];

const transports = new Map<string, Transport>();
export function transport(baseUrl: string, protocol: Protocol): Transport {
  const key = `${protocol} ${baseUrl}`;
  let t = transports.get(key);
  if (!t) {
    t =
      protocol === "grpc"
        ? createGrpcTransport({ baseUrl })
        : protocol === "grpc-web"
          ? createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })
          : createConnectTransport({ baseUrl, httpVersion: "1.1" });
    transports.set(key, t);
  }
  return t;
}

export interface CallOptions {
  token?: string;
  headers?: Record<string, string>;
  /** A server stream is read for this long (then cancelled; the messages so far are the answer). Default 1500 ms. */
  streamMs?: number;
}

/**
 * Calls `method` at `baseUrl` (the gateway, or a backend's `http://host:port`) with `protocol`;
 * the request is proto3 JSON. Resolves the outcome; an error's code and message are recorded.
 */
export async function call(
  baseUrl: string,
  protocol: Protocol,
  method: DescMethod,
  body: JsonObject = {},
  opts: CallOptions = {},
): Promise<Outcome> {
  const client = createClient(method.parent, transport(baseUrl, protocol)) as unknown as Record<
    string,
    (req: unknown, o: { headers: Record<string, string>; timeoutMs?: number; signal?: AbortSignal }) => unknown
  >;
  const headers = { ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }), ...opts.headers };
  const req = fromJson(method.input, body);
  const fn = client[method.localName];
  if (!fn) throw new Error(`no client method ${method.localName}`);
  try {
    if (method.methodKind === "unary") {
      const res = await (fn as (r: unknown, o: object) => Promise<never>)(req, {
        headers,
        timeoutMs: 15_000,
      });
      return { ok: true, code: "OK", body: toJson(method.output, res) as JsonObject };
    }
    const abort = new AbortController();
    const messages: JsonObject[] = [];
    const timer = setTimeout(() => abort.abort(), opts.streamMs ?? 1500);
    try {
      for await (const m of fn(req, { headers, signal: abort.signal }) as AsyncIterable<never>)
        messages.push(toJson(method.output, m) as JsonObject);
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    } finally {
      clearTimeout(timer);
    }
    return { ok: true, code: "OK", body: {}, messages };
  } catch (err) {
    const e = ConnectError.from(err);
    seenErrors.push({ where: `${protocol} ${pathOf(method)}`, message: e.rawMessage });
    return { ok: false, code: Code[e.code] ?? String(e.code), message: e.rawMessage };
  }
}

/** The request body as `create()` would make it, with every `*_id` field a fresh UUID (valid, but nobody's). */
export function strangerIds(method: DescMethod): JsonObject {
  const body = toJson(method.input, create(method.input), { alwaysEmitImplicit: false }) as JsonObject;
  for (const f of method.input.fields) {
    // A message-typed field (UpdateTaskRequest.label_ids: LabelIds) holds its ids inside; left unset.
    if (f.fieldKind === "message") continue;
    if (f.name.endsWith("_ids")) body[f.jsonName] = [randomUUID()];
    else if (f.name.endsWith("_id")) body[f.jsonName] = randomUUID();
  }
  return body;
}

// ---------------------------------------------------------------------------------------------
// Tokens

const b64 = (v: string | Buffer) => Buffer.from(v).toString("base64url");

/** The claims of a token as issued (its payload, decoded without verifying). */
export function claimsOf(token: string): Record<string, JsonValue> {
  return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8"));
}

export interface UsersKey {
  kid: string;
  privateJwk: JWK;
  /** The public key as JWK (what the JWKS serves). */
  publicJwk: JWK;
}

/** The users service's current signing key, from its key file in the data dir. */
export function usersKey(dataDir: string): UsersKey {
  const file = JSON.parse(readFileSync(join(dataDir, "users-signing-key.json"), "utf8")) as {
    keys: Array<{ kid: string; privateJwk: JWK; retiredAt?: string }>;
  };
  const current = file.keys.filter((k) => !k.retiredAt).at(-1);
  if (!current) throw new Error("users-signing-key.json has no current key");
  const { d: _d, ...publicJwk } = current.privateJwk;
  return { kid: current.kid, privateJwk: current.privateJwk, publicJwk };
}

/** Signs `claims` with an Ed25519 private JWK under `header` (alg EdDSA unless the header says otherwise). */
export async function signEdDSA(privateJwk: JWK, header: Record<string, string>, claims: object): Promise<string> {
  const key = await importJWK(privateJwk, USER_TOKEN_ALG);
  return await new SignJWT({ ...claims }).setProtectedHeader({ alg: USER_TOKEN_ALG, ...header }).sign(key);
}

/** A JWS with an arbitrary header, signed HS256 by hand with `secret` (jose would refuse some of these keys). */
export function signHS256(header: object, claims: object, secret: Buffer | string): string {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

/** An unsecured JWT (RFC 7519 §6): alg "none" and an empty signature. */
export function unsigned(claims: object, header: object = { alg: "none", typ: "JWT" }): string {
  return `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}.`;
}

/** `token` with its payload replaced and its signature kept. */
export function withPayload(token: string, claims: object): string {
  const [head, , sig] = token.split(".");
  return `${head}.${b64(JSON.stringify(claims))}.${sig}`;
}

// ---------------------------------------------------------------------------------------------
// Leaks

/** A stack frame, SQL, or a file path: none of these may reach a caller. */
export const LEAK_PATTERNS: ReadonlyArray<[string, RegExp]> = [
  ["stack trace", /\n\s+at\s|\bat\s+\S+\s+\(.*:\d+:\d+\)|\bat (file|node):/],
  ["error class dump", /\b(TypeError|ReferenceError|RangeError|SqliteError):/],
  [
    "SQL",
    /\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b|SQLITE_[A-Z]+|\bsqlite3?\b/i,
  ],
  [
    "file path",
    /(^|[\s'"(=])(\/(work|home|tmp|usr|var|etc|opt|root|Users|private)\/\S*|[A-Za-z]:\\\S+)|\S+\.(ts|js|mjs|cjs|db|sqlite)(:\d+)?\b|node_modules/,
  ],
];
