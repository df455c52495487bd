import http2 from "node:http2";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { TaskSchema } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireUser } from "../auth/identity.js";
import { createUserTokenVerifier, USER_TOKEN_AUDIENCE, USER_TOKEN_ISSUER } from "../auth/tokens.js";
import { createLogger } from "../log/logger.js";
import { createGrpcClient } from "../rpc/grpc-client.js";
import { GrpcServer, register } from "../rpc/grpc-server.js";
import { stubService } from "../testing/service-stub.js";
import { EdgeServer } from "./edge-server.js";
import { forwardService } from "./forward-service.js";

const logger = createLogger("edge-test", { level: "silent" });

/** What the backend saw of the last call. */
interface Seen {
  headers: Record<string, string | null>;
  timeoutMs: number | undefined;
  userId: string;
  aborted: boolean;
}

let backend: GrpcServer;
let edge: EdgeServer;
let edgePort: number;
let token: string;
const seen: Seen[] = [];

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA" };
  const verifier = createUserTokenVerifier(createLocalJWKSet({ keys: [jwk] }));
  token = await new SignJWT({})
    .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
    .setSubject("user-1")
    .setIssuer(USER_TOKEN_ISSUER)
    .setAudience(USER_TOKEN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(privateKey);

  // A backend whose GetTask sleeps for the number of ms in its task id's last group and reports what it saw.
  const record = (ctx: HandlerContext) => {
    const h = ctx.requestHeader;
    const entry: Seen = {
      headers: Object.fromEntries(["authorization", "x-request-id", "x-user-id", "x-custom"].map((k) => [k, h.get(k)])),
      timeoutMs: ctx.timeoutMs(),
      userId: requireUser(ctx).userId,
      aborted: false,
    };
    seen.push(entry);
    return entry;
  };
  backend = new GrpcServer({
    name: "backend",
    logger,
    userTokens: verifier,
    services: [
      register(
        TaskService,
        stubService(TaskService, {
          async getTask(req, ctx) {
            const entry = record(ctx);
            const ms = Number(req.taskId.split("-").pop());
            await sleep(ms, undefined, { signal: ctx.signal }).catch(() => {
              entry.aborted = true;
            });
            return { task: create(TaskSchema, { id: req.taskId, userId: entry.userId }) };
          },
        }),
        { kind: "user" },
      ),
    ],
  });
  const backendPort = await backend.listen(0);
  const client = createGrpcClient(TaskService, { address: `127.0.0.1:${backendPort}` });
  edge = new EdgeServer({
    logger,
    services: (drainSignal) => [
      {
        service: TaskService,
        impl: forwardService(TaskService, client, { userTokens: verifier, maxTimeoutMs: 1000, drainSignal }),
      },
    ],
  });
  edgePort = await edge.listen(0);
});

afterAll(async () => {
  await edge.shutdown(1000);
  await backend.shutdown(1000);
});

/** A task id (a valid UUID) that makes the test backend sleep `ms` milliseconds. */
const sleepy = (ms: number) => `00000000-0000-4000-8000-${String(ms).padStart(12, "0")}`;
const auth = () => ({ authorization: `Bearer ${token}` });

describe("EdgeServer", () => {
  it("forwards only authorization and a request id, never other client headers", async () => {
    const client = createClient(
      TaskService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${edgePort}`, httpVersion: "1.1" }),
    );
    seen.length = 0;
    await client.getTask(
      { taskId: sleepy(0) },
      { headers: { ...auth(), "x-user-id": "someone-else", "x-custom": "1", "x-request-id": "req-42" } },
    );
    expect(seen[0]?.headers).toEqual({
      authorization: `Bearer ${token}`,
      "x-request-id": "req-42",
      "x-user-id": null,
      "x-custom": null,
    });
    expect(seen[0]?.userId).toBe("user-1");
  });

  it("gives the backend the caller's remaining deadline, capped at maxTimeoutMs", async () => {
    const client = createClient(TaskService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${edgePort}` }));
    seen.length = 0;
    await client.getTask({ taskId: sleepy(0) }, { headers: auth(), timeoutMs: 300 });
    await client.getTask({ taskId: sleepy(0) }, { headers: auth(), timeoutMs: 60_000 });
    await client.getTask({ taskId: sleepy(0) }, { headers: auth() });
    const [short, long, none] = seen.map((s) => s.timeoutMs ?? Infinity);
    expect(short).toBeLessThanOrEqual(300);
    expect(long).toBeLessThanOrEqual(1000);
    expect(none).toBeLessThanOrEqual(1000);
    const late = await client.getTask({ taskId: sleepy(3000) }, { headers: auth() }).catch((e) => e);
    expect(ConnectError.from(late).code).toBe(Code.DeadlineExceeded);
  });

  it("cancels the backend call when a gRPC caller cancels", async () => {
    const client = createClient(TaskService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${edgePort}` }));
    seen.length = 0;
    const cancel = new AbortController();
    const call = client.getTask({ taskId: sleepy(3000) }, { headers: auth(), signal: cancel.signal }).catch((e) => e);
    const started = Date.now();
    while (seen.length === 0 && Date.now() - started < 5000) await sleep(10);
    cancel.abort();
    expect(ConnectError.from(await call).code).toBe(Code.Canceled);
    while (!seen[0]?.aborted && Date.now() - started < 5000) await sleep(10);
    expect(seen[0]?.aborted).toBe(true);
  });

  it("tells HTTP/1.1 from h2c even when the first bytes arrive one at a time", async () => {
    const body = JSON.stringify({ taskId: sleepy(0) });
    const h1 = net.connect(edgePort, "127.0.0.1");
    await new Promise((r) => h1.once("connect", r));
    const request =
      `POST /taskmesh.tasks.v1.TaskService/GetTask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Authorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
    for (const ch of request.slice(0, 30)) {
      h1.write(ch);
      await sleep(2);
    }
    h1.write(request.slice(30)); // no FIN: Node's http server aborts a request whose client half-closes
    let response = "";
    for await (const chunk of h1) response += chunk;
    expect(response).toMatch(/^HTTP\/1\.1 200/);
    expect(response).toContain('"userId":"user-1"');

    // h2c prior knowledge, preface split across packets.
    const session = http2.connect(`http://127.0.0.1:${edgePort}`, {
      createConnection: () => {
        const s = net.connect(edgePort, "127.0.0.1");
        const write = s.write.bind(s);
        let first = true;
        s.write = ((chunk: Buffer, ...rest: never[]) => {
          if (!first) return write(chunk, ...rest);
          first = false;
          write(chunk.subarray(0, 5));
          setTimeout(() => write(chunk.subarray(5), ...rest), 20);
          return true;
        }) as typeof s.write;
        return s;
      },
    });
    const stream = session.request({
      ":method": "POST",
      ":path": "/taskmesh.tasks.v1.TaskService/GetTask",
      "content-type": "application/json",
      ...auth(),
    });
    stream.end(body);
    let status = 0;
    stream.on("response", (h) => {
      status = Number(h[":status"]);
    });
    let h2body = "";
    for await (const chunk of stream) h2body += chunk;
    session.close();
    expect(status).toBe(200);
    expect(h2body).toContain('"userId":"user-1"');
  });

  /**
   * An HTTP/1.1 connection over a raw socket, to send a request body at our own pace and read what
   * comes back meanwhile: `until(re)` waits for the text received so far to match.
   */
  const rawH1 = async () => {
    const socket = net.connect(edgePort, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    let text = "";
    let closed = false;
    let writeError = "";
    socket.on("data", (c: Buffer) => {
      text += c.toString("latin1");
    });
    socket.on("close", () => {
      closed = true;
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      writeError = e.code ?? e.message;
    });
    const until = async (re: RegExp, ms = 5000) => {
      const end = Date.now() + ms;
      while (!re.test(text) && !closed && Date.now() < end) await sleep(10);
      return re.test(text);
    };
    const closedWithin = async (ms: number) => {
      const end = Date.now() + ms;
      while (!closed && Date.now() < end) await sleep(10);
      return closed;
    };
    return { socket, until, closedWithin, text: () => text, closed: () => closed, writeError: () => writeError };
  };
  /** A gRPC-Web CreateTask whose one message claims `size` bytes: headers and envelope prefix only. */
  const oversizedGrpcWebHead = (size: number) => {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(size, 1);
    return Buffer.concat([
      Buffer.from(
        `POST /taskmesh.tasks.v1.TaskService/CreateTask HTTP/1.1\r\nHost: x\r\n` +
          `Content-Type: application/grpc-web+proto\r\nAuthorization: Bearer ${token}\r\n` +
          `Content-Length: ${5 + size}\r\n\r\n`,
      ),
      prefix,
    ]);
  };
  const healthCheck =
    "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
    "Content-Length: 2\r\n\r\n{}";

  it("answers an oversized HTTP/1.1 request before its body is sent, then reads the rest so the client can finish and reuse the connection", async () => {
    const c = await rawH1();
    c.socket.write(oversizedGrpcWebHead(2 * 1024 * 1024));
    // The answer comes while the client has sent none of the 2 MiB.
    expect(await c.until(/grpc-status: ?8/i)).toBe(true);
    expect(c.text()).toMatch(/readMaxBytes/);
    expect(c.text()).not.toMatch(/connection: close/i);
    // The client finishes its body without a reset (the server reads and discards it)...
    for (let i = 0; i < 32; i++)
      await new Promise<void>((r, j) => c.socket.write(Buffer.alloc(64 * 1024), (e) => (e ? j(e) : r())));
    // ...and its next request on the same connection is answered.
    c.socket.write(healthCheck);
    expect(await c.until(/"status":"SERVING"/)).toBe(true);
    expect([c.closed(), c.writeError()]).toEqual([false, ""]);
    c.socket.destroy();
  });

  it("closes the connection when an abandoned body goes on past 8 MiB", async () => {
    const c = await rawH1();
    c.socket.write(oversizedGrpcWebHead(64 * 1024 * 1024));
    expect(await c.until(/grpc-status: ?8/i)).toBe(true);
    const chunk = Buffer.alloc(256 * 1024);
    let sent = 0;
    while (!c.closed() && !c.writeError() && sent < 32 * 1024 * 1024) {
      const ok = c.socket.write(chunk);
      sent += chunk.length;
      if (!ok) await Promise.race([new Promise((r) => c.socket.once("drain", r)), sleep(200)]);
    }
    expect(await c.closedWithin(5000)).toBe(true);
    // Cut off after 8 MiB of the rest (plus what the socket buffers held), not after all 64.
    expect(sent).toBeLessThan(20 * 1024 * 1024);
    c.socket.destroy();
  });

  it("lets a call in flight finish on shutdown while refusing new connections", async () => {
    const client = createClient(TaskService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${edgePort}` }));
    seen.length = 0;
    const inFlight = client.getTask({ taskId: sleepy(400) }, { headers: auth() });
    await sleep(100);
    const stopping = edge.shutdown(5000);
    await sleep(50);
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(edgePort, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(false);
      });
      s.once("error", () => resolve(true));
    });
    expect(refused).toBe(true);
    const res = await inFlight;
    expect(res.task?.id).toBe(sleepy(400));
    expect(seen[0]?.aborted).toBe(false);
    await stopping;
  });
});

/**
 * gRPC calls of forwarded unary methods skip connect-node at the edge (grpc-pass-through.ts): the
 * message bytes go to the backend and back as they are. A raw grpc-js backend here answers bytes
 * no protobuf library would write (fields out of order, an unknown field), so the tests can tell
 * the pass-through (bytes unchanged) from connect's path (decoded and re-encoded).
 */
describe("EdgeServer gRPC pass-through", () => {
  // GetTaskResponse{ task: Task{ title: "t" (field 3), id: "x" (field 1), unknown field 999: 7 } }.
  const task = Buffer.from([0x1a, 0x01, 0x74, 0x0a, 0x01, 0x78, 0xb8, 0x3e, 0x07]);
  const answer = Buffer.concat([Buffer.from([0x0a, task.length]), task]);
  const received: Buffer[] = [];
  let raw: grpc.Server;
  let edge2: EdgeServer;
  let port: number;
  const id = (b: Buffer) => b;

  beforeAll(async () => {
    raw = new grpc.Server();
    const def = (name: string) => ({
      path: `/taskmesh.tasks.v1.TaskService/${name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: id,
      requestDeserialize: id,
      responseSerialize: id,
      responseDeserialize: id,
    });
    raw.addService(
      { getTask: def("GetTask"), deleteTask: def("DeleteTask") },
      {
        getTask: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          received.push(call.request);
          cb(null, answer);
        },
        deleteTask: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
          cb({ code: grpc.status.NOT_FOUND, details: "task not found" }),
      },
    );
    const rawPort = await new Promise<number>((resolve, reject) =>
      raw.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const { publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const verifier = createUserTokenVerifier(
      createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: "k2", alg: "EdDSA" }] }),
    );
    // The edge accepts any token whose verification it is told succeeded: verify() resolves the user.
    const userTokens = { ...verifier, verify: async (t: string) => (t === "good" ? "user-9" : verifier.verify(t)) };
    edge2 = new EdgeServer({
      logger,
      readMaxBytes: 1024,
      services: [
        {
          service: TaskService,
          impl: forwardService(TaskService, createGrpcClient(TaskService, { address: `127.0.0.1:${rawPort}` }), {
            userTokens,
            maxTimeoutMs: 1000,
          }),
        },
      ],
    });
    port = await edge2.listen(0);
  });
  afterAll(async () => {
    await edge2.shutdown(500);
    raw.forceShutdown();
  });

  /** A unary gRPC call through the edge with bytes in and bytes out, and the response headers. */
  const callBytes = (
    path: string,
    body: Buffer,
    headers: Record<string, string> = { authorization: "Bearer good" },
  ) => {
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    return new Promise<{ bytes?: Buffer; err?: grpc.ServiceError; headers: grpc.Metadata }>((resolve) => {
      let headers = new grpc.Metadata();
      const call = client.makeUnaryRequest(
        `/taskmesh.tasks.v1.TaskService/${path}`,
        id,
        id,
        body,
        md,
        { deadline: Date.now() + 5000 },
        (err, bytes) => {
          client.close();
          resolve(err ? { err, headers } : { bytes, headers });
        },
      );
      call.on("metadata", (m) => {
        headers = m;
      });
    });
  };

  it("relays the message bytes both ways unchanged, with a request id and trace id in the answer", async () => {
    // GetTaskRequest with an unknown field (999) before task_id (1): not what protobuf-es would write.
    const request = Buffer.from([0xb8, 0x3e, 0x05, 0x0a, 0x01, 0x61]);
    received.length = 0;
    const res = await callBytes("GetTask", request);
    expect(res.err).toBeUndefined();
    expect(received).toEqual([request]);
    expect(res.bytes).toEqual(answer);
    expect(res.headers.get("x-request-id")[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get("x-trace-id")[0]).toMatch(/^[0-9a-f]{32}$/);

    // The same call over Connect (binary, HTTP/1.1) is decoded and re-encoded by connect: same message, canonical bytes.
    const viaConnect = await fetch(`http://127.0.0.1:${port}/taskmesh.tasks.v1.TaskService/GetTask`, {
      method: "POST",
      headers: { "content-type": "application/proto", authorization: "Bearer good" },
      body: request,
    });
    const reencoded = Buffer.from(await viaConnect.arrayBuffer());
    expect(viaConnect.status).toBe(200);
    expect(reencoded).not.toEqual(answer);
    expect(reencoded.length).toBe(answer.length);
  });

  it("answers errors as connect does: the backend's code and message, the edge's own refusals by name", async () => {
    const cases = await Promise.all([
      callBytes("DeleteTask", Buffer.alloc(0)),
      callBytes("GetTask", Buffer.alloc(0), {}),
      callBytes("GetTask", Buffer.alloc(2000)),
    ]);
    // grpc-js decodes grpc-message with decodeURI, which leaves connect's %3A for ":" as it is.
    expect(cases.map((c) => [c.err?.code, decodeURIComponent(c.err?.details ?? "")])).toEqual([
      [grpc.status.NOT_FOUND, "task not found"],
      [grpc.status.UNAUTHENTICATED, "authorization: Bearer <token> is required"],
      [grpc.status.RESOURCE_EXHAUSTED, "message size is larger than configured readMaxBytes 1024"],
    ]);
    // The edge's refusals carry the trace id as error metadata, as connect's path does.
    expect(cases[1]?.err?.metadata.get("x-trace-id")[0]).toMatch(/^[0-9a-f]{32}$/);
  });

  it("refuses a body that is not exactly one uncompressed message", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const send = (body: Buffer) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const s = session.request({
          ":method": "POST",
          ":path": "/taskmesh.tasks.v1.TaskService/GetTask",
          "content-type": "application/grpc",
          te: "trailers",
          authorization: "Bearer good",
        });
        let status: Record<string, unknown> = {};
        s.on("response", (h) => {
          if (h["grpc-status"] !== undefined) status = h;
        });
        s.on("trailers", (t) => {
          status = t;
        });
        s.resume();
        s.on("close", () => resolve({ code: status["grpc-status"], message: status["grpc-message"] }));
        s.end(body);
      });
    const frame = (flags: number, payload: Buffer) => {
      const head = Buffer.alloc(5);
      head[0] = flags;
      head.writeUInt32BE(payload.length, 1);
      return Buffer.concat([head, payload]);
    };
    const one = frame(0, Buffer.from([0x0a, 0x01, 0x61]));
    const results = await Promise.all([
      send(Buffer.concat([one, one])),
      send(frame(1, Buffer.from([1, 2, 3]))),
      send(one.subarray(0, 6)),
    ]);
    session.close();
    expect(results).toEqual([
      {
        code: "12",
        message: encodeURIComponent("protocol error: received extra input message for unary method GetTask"),
      },
      { code: "3", message: encodeURIComponent("received compressed envelope, but do not know how to decompress") },
      { code: "3", message: encodeURIComponent("protocol error: premature end of stream") },
    ]);
  });
});
