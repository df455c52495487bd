// The fuzz run against a running system: a fuzz user signed up through the gateway, `count` cases
// sent with some concurrency, each answer tallied per method; then the checks: no INTERNAL /
// UNKNOWN / HTTP 500, no stack trace, SQL or file path in an error, every process still SERVING,
// and the fuzz user's tasks changed only by CreateTask calls that answered OK.
import { randomUUID } from "node:crypto";
import { type DescMethod, fromBinary } from "@bufbuild/protobuf";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { createGrpcClient } from "@taskmesh/platform";
import type { RunningSystem } from "@taskmesh/runner";
import { findLeaks, isFailure, isNoAnswer } from "./checks.js";
import { type FuzzCase, generateCase } from "./generator.js";
import { fuzzTargets } from "./schema.js";
import { type Outcome, Sender } from "./transport.js";

export interface FuzzOptions {
  system: RunningSystem;
  count: number;
  seed: number;
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
  /** Only these case indexes (to replay offenders). Default: 0..count-1. */
  only?: readonly number[];
  /** Called after each answer (progress, debugging). */
  onAnswer?: (done: number, total: number, c: FuzzCase, o: Outcome) => void;
}

export interface Finding {
  seed: number;
  index: number;
  method: string;
  protocol: string;
  code: string;
  httpStatus?: number;
  message: string;
  /** Why it is listed (e.g. "INTERNAL", "stack trace in message"). */
  why: string;
  labels: string[];
  request: {
    transport: string;
    httpMethod: string;
    path: string;
    headers: Record<string, string>;
    bodyLength: number;
    /** The whole body, base64, when under 4 KiB; its first 512 bytes otherwise. */
    bodyBase64: string;
    bodyTruncated: boolean;
  };
  replay: string;
}

export interface FuzzReport {
  seed: number;
  sent: number;
  durationMs: number;
  services: string[];
  /** Listed by reflection without a descriptor in @taskmesh/gen (not fuzzed). */
  unknownServices: string[];
  /** method → code → count. */
  codes: Record<string, Record<string, number>>;
  /** protocol → code → count. */
  byProtocol: Record<string, Record<string, number>>;
  /** INTERNAL, UNKNOWN, DATA_LOSS or HTTP 500. */
  offenders: Finding[];
  /** Error texts with a stack trace, SQL or a file path. */
  leaks: Finding[];
  /** No status at all: timeouts, resets, gRPC answers without grpc-status. */
  noAnswer: Finding[];
  /** The slowest answers (server streams excluded: they are held open on purpose). */
  slowest: Array<{ ms: number; method: string; protocol: string; code: string; labels: string[]; replay: string }>;
  storage: {
    before: number;
    after: number;
    okCreates: number;
    /** Tasks of the fuzz user that no OK CreateTask returned (as JSON). */
    unexplained: string[];
    /** OK CreateTask answers whose task id could not be read (they may explain an "unexplained" task). */
    okWithoutId: Finding[];
    /** Tasks that existed before the run and are gone or changed. */
    lost: string[];
  };
  /** Process name → "SERVING" or what was wrong. */
  health: Record<string, string>;
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const { system, seed } = opts;
  const gatewayUrl = system.endpoints.gateway;
  const targets = await fuzzTargets(gatewayUrl);
  if (targets.methods.length === 0) throw new Error("reflection on the gateway lists no public method");

  const user = await signUp(gatewayUrl);
  // Tasks the fuzz user owns before the run: they must come out unchanged.
  for (let i = 0; i < 2; i++)
    await connectJson(
      gatewayUrl,
      "taskmesh.tasks.v1.TaskService/CreateTask",
      { task: { title: `baseline ${i}` } },
      user.token,
    );
  const before = await listAllTasks(gatewayUrl, user.token);

  // Logout gets a second session of the same user: the first stays signed in for the whole run.
  const sender = new Sender({ gatewayUrl, userToken: user.token, sessionEndingToken: await logIn(gatewayUrl, user) });
  const indexes = opts.only ?? Array.from({ length: opts.count }, (_, i) => i);
  const codes: FuzzReport["codes"] = {};
  const byProtocol: FuzzReport["byProtocol"] = {};
  const offenders: Finding[] = [];
  const leaks: Finding[] = [];
  const noAnswer: Finding[] = [];
  const okWithoutId: Finding[] = [];
  const created = new Set<string>();
  let okCreates = 0;
  let done = 0;
  const started = Date.now();

  const slowest: FuzzReport["slowest"] = [];
  const handle = (c: FuzzCase, o: Outcome) => {
    const key = methodKey(c.method);
    if (o.code !== "stream_open") {
      slowest.push({
        ms: o.ms,
        method: key,
        protocol: c.protocol,
        code: o.code,
        labels: c.labels,
        replay: replayOf(c),
      });
      slowest.sort((a, b) => b.ms - a.ms);
      slowest.length = Math.min(slowest.length, 5);
    }
    bump(codes, key, o.code);
    bump(byProtocol, c.protocol, o.code);
    const finding = (why: string) => toFinding(sender, c, o, why);
    if (isFailure(o)) offenders.push(finding(o.code.toUpperCase()));
    if (isNoAnswer(o)) noAnswer.push(finding(o.code));
    for (const leak of findLeaks(o.errorText, requestText(c))) leaks.push(finding(leak));
    if (
      o.code === "ok" &&
      c.method.name === "CreateTask" &&
      c.method.parent.typeName === "taskmesh.tasks.v1.TaskService"
    ) {
      okCreates++;
      const id = createdTaskId(c.method, o);
      if (id) created.add(id);
      else okWithoutId.push(finding("OK CreateTask answer without a readable task id"));
    }
  };

  let next = 0;
  const worker = async () => {
    while (next < indexes.length) {
      const index = indexes[next++] as number;
      const c = generateCase(seed, index, targets.methods);
      const o = await sender.send(c);
      handle(c, o);
      opts.onAnswer?.(++done, indexes.length, c, o);
    }
  };
  try {
    await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, worker));
  } finally {
    sender.close();
  }
  const durationMs = Date.now() - started;

  const health = await checkHealth(system);
  const after = await listAllTasks(gatewayUrl, user.token);
  const unexplained = [...after].filter(([id]) => !before.has(id) && !created.has(id)).map(([, t]) => t);
  const lost = [...before].filter(([id, t]) => after.get(id) !== t).map(([id]) => id);

  return {
    seed,
    sent: indexes.length,
    durationMs,
    services: targets.services.map((s) => s.typeName),
    unknownServices: targets.unknown,
    codes,
    byProtocol,
    offenders,
    leaks,
    noAnswer,
    slowest,
    storage: { before: before.size, after: after.size, okCreates, unexplained, okWithoutId, lost },
    health,
  };
}

export function methodKey(m: DescMethod): string {
  return `${m.parent.name}.${m.name}`;
}

function bump(t: Record<string, Record<string, number>>, row: string, col: string) {
  const r = t[row] ?? {};
  r[col] = (r[col] ?? 0) + 1;
  t[row] = r;
}

function requestText(c: FuzzCase): string {
  const body = Buffer.from(c.body);
  let path = c.path;
  try {
    path = decodeURIComponent(c.path);
  } catch {}
  return `${path}\n${body.toString("utf8")}\n${body.toString("latin1")}`;
}

function toFinding(sender: Sender, c: FuzzCase, o: Outcome, why: string): Finding {
  const headers = sender.headersOf(c);
  if (c.auth.kind === "user") headers.authorization = "Bearer <fuzz user's token>";
  const small = c.body.length <= 4096;
  return {
    seed: c.seed,
    index: c.index,
    method: methodKey(c.method),
    protocol: c.protocol,
    code: o.code,
    ...(o.httpStatus !== undefined ? { httpStatus: o.httpStatus } : {}),
    message: o.message.slice(0, 500),
    why,
    labels: c.labels,
    request: {
      transport: c.transport,
      httpMethod: c.httpMethod,
      path: c.path.length > 300 ? `${c.path.slice(0, 300)}…` : c.path,
      headers,
      bodyLength: c.body.length,
      bodyBase64: Buffer.from(small ? c.body : c.body.subarray(0, 512)).toString("base64"),
      bodyTruncated: !small,
    },
    replay: replayOf(c),
  };
}

function replayOf(c: FuzzCase): string {
  return `npm run fuzz -- --seed ${c.seed} --only ${c.index}`;
}

function createdTaskId(method: DescMethod, o: Outcome): string | undefined {
  if (!o.response) return undefined;
  try {
    if (o.response.json)
      return (JSON.parse(Buffer.from(o.response.bytes).toString("utf8")) as { task?: { id?: string } }).task?.id;
    return (fromBinary(method.output, o.response.bytes) as unknown as { task?: { id?: string } }).task?.id;
  } catch {
    return undefined;
  }
}

/** grpc.health.v1 Check("") on every process's own port (the gateway's included), and the process alive. */
async function checkHealth(system: RunningSystem): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, address] of Object.entries(system.endpoints.grpc)) {
    const pid = system.services[name]?.pid;
    try {
      if (pid !== undefined) process.kill(pid, 0);
    } catch {
      out[name] = `process ${pid} is gone`;
      continue;
    }
    const client = createGrpcClient(Health, { address, defaultTimeoutMs: 5000, retries: false });
    try {
      const res = await client.check({ service: "" });
      out[name] = HealthCheckResponse_ServingStatus[res.status] ?? String(res.status);
    } catch (err) {
      out[name] = `health check failed: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      client.close();
    }
  }
  return out;
}

// ---------------------------------------------------------------- well-behaved calls (Connect JSON)

interface JsonAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** A Connect JSON call that waits out RESOURCE_EXHAUSTED / UNAVAILABLE (rate limits, restarts). */
async function connectJson(
  gatewayUrl: string,
  path: string,
  body: unknown,
  token?: string,
): Promise<Record<string, unknown>> {
  let last: JsonAnswer | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    const res = await fetch(`${gatewayUrl}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    last = { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    if (res.ok) return last.body;
    if (last.body.code !== "resource_exhausted" && last.body.code !== "unavailable") break;
    await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
  }
  throw new Error(`${path} failed: HTTP ${last?.status} ${JSON.stringify(last?.body)}`);
}

async function logIn(gatewayUrl: string, user: { email: string; password: string }): Promise<string> {
  const login = await connectJson(gatewayUrl, "taskmesh.users.v1.UserService/Login", user);
  return String(login.accessToken);
}

async function signUp(gatewayUrl: string): Promise<{ email: string; password: string; token: string }> {
  // The password is never one of the generator's values, so a fuzzed DeleteAccount cannot succeed.
  const email = `fuzz-${randomUUID()}@example.com`;
  const password = `fuzz-${randomUUID()}`;
  await connectJson(gatewayUrl, "taskmesh.users.v1.UserService/Register", { email, password });
  const login = await connectJson(gatewayUrl, "taskmesh.users.v1.UserService/Login", { email, password });
  return { email, password, token: String(login.accessToken) };
}

/** id → the task as JSON text (so "unchanged" can be checked), over every page. */
async function listAllTasks(gatewayUrl: string, token: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let pageToken = "";
  for (let page = 0; page < 1000; page++) {
    const res = await connectJson(
      gatewayUrl,
      "taskmesh.tasks.v1.TaskService/ListTasks",
      { pageSize: 100, pageToken },
      token,
    );
    for (const t of (res.tasks as Array<{ id: string }> | undefined) ?? []) out.set(t.id, JSON.stringify(t));
    pageToken = String(res.nextPageToken ?? "");
    if (!pageToken) return out;
  }
  throw new Error("ListTasks did not end after 1000 pages");
}
