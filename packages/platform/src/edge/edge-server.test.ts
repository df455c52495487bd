import http2 from "node:http2";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
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
