// The fuzzer's own parts, without a running system: cases are reproducible from (seed, index),
// answers are read the way each protocol defines them, and the leak checks tell a leak from a
// good error message.

import { fromBinary } from "@bufbuild/protobuf";
import { MarkReadRequestSchema, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { describe, expect, it } from "vitest";
import { findLeaks, isFailure } from "./checks.js";
import { generateCase } from "./generator.js";
import { binaryMessage } from "./payload-binary.js";
import { Rng } from "./prng.js";
import { interpret } from "./transport.js";
import { envelope } from "./wire.js";

const methods = [...UserService.methods, ...TaskService.methods, ...NotificationService.methods];

describe("fuzz case generation", () => {
  it("gives the same request for the same seed and index, whatever was generated before", () => {
    const later = generateCase(42, 7, methods);
    for (let i = 0; i < 50; i++) generateCase(42, i, methods);
    const again = generateCase(42, 7, methods);
    expect({ ...again, body: Buffer.from(again.body).toString("hex") }).toEqual({
      ...later,
      body: Buffer.from(later.body).toString("hex"),
    });
  });

  it("gives different requests for different indexes", () => {
    // A request is its path, protocol, transport and body: methods whose request message has no
    // fields (ListProjects, Logout, …) send the same few bodies, so bodies alone repeat more.
    const requests = new Set(
      Array.from({ length: 40 }, (_, i) => {
        const c = generateCase(42, i, methods);
        return [c.path, c.protocol, c.transport, Buffer.from(c.body).toString("hex")].join(" ");
      }),
    );
    expect(requests.size).toBeGreaterThan(35);
  });

  it("covers every protocol, credentials with and without a valid token, and bodies over 1 MiB", () => {
    const cases = Array.from({ length: 2000 }, (_, i) => generateCase(1, i, methods));
    expect(new Set(cases.map((c) => c.protocol))).toEqual(
      new Set([
        "connect-json",
        "connect-proto",
        "connect-get",
        "connect-stream-json",
        "connect-stream-proto",
        "grpc",
        "grpc-json",
        "grpc-web",
        "grpc-web-text",
        "wrong-content-type",
      ]),
    );
    expect(new Set(cases.map((c) => c.auth.kind))).toEqual(new Set(["user", "none", "garbage"]));
    expect(cases.some((c) => c.body.length > 1024 * 1024)).toBe(true);
    expect(cases.some((c) => c.labels.some((l) => l.startsWith("frame:length")))).toBe(true);
    expect(cases.some((c) => c.labels.some((l) => l.startsWith("enum:unknown-number")))).toBe(true);
  });

  it("writes bytes that are not UTF-8 into string fields when asked", () => {
    let found = false;
    for (let seed = 0; seed < 400 && !found; seed++) {
      const labels: string[] = [];
      const bytes = binaryMessage(new Rng(seed), MarkReadRequestSchema, labels);
      if (!labels.some((l) => l.startsWith("string:invalid-utf8"))) continue;
      found = true;
      expect(() => fromBinary(MarkReadRequestSchema, bytes)).toThrow(/utf-8/i);
    }
    expect(found).toBe(true);
  });
});

describe("reading answers", () => {
  const grpcInternal = {
    status: 200,
    headers: {
      "content-type": "application/grpc",
      "grpc-status": "13",
      "grpc-message": "parse%20binary%3A%20premature%20EOF",
    },
    trailers: {},
    body: Buffer.alloc(0),
  };

  it("reads a gRPC Trailers-Only INTERNAL as a failure, with its message decoded", () => {
    const o = interpret(grpcInternal);
    expect([o.code, o.message, isFailure(o)]).toEqual(["internal", "parse binary: premature EOF", true]);
  });

  it("reads the status of a gRPC-Web answer from its trailer frame", () => {
    const trailer = Buffer.from("grpc-status: 3\r\ngrpc-message: bad%20title\r\n");
    const o = interpret({
      status: 200,
      headers: { "content-type": "application/grpc-web+proto" },
      trailers: {},
      body: Buffer.from(envelope(0x80, trailer)),
    });
    expect([o.code, o.message, isFailure(o)]).toEqual(["invalid_argument", "bad title", false]);
  });

  it("reads a Connect error from its JSON body, and any HTTP 500 as a failure", () => {
    const json = interpret({
      status: 400,
      headers: { "content-type": "application/json" },
      trailers: {},
      body: Buffer.from('{"code":"invalid_argument","message":"title"}'),
    });
    expect([json.code, isFailure(json)]).toEqual(["invalid_argument", false]);
    const plain = interpret({
      status: 500,
      headers: { "content-type": "text/plain" },
      trailers: {},
      body: Buffer.from("oops"),
    });
    expect([plain.code, isFailure(plain)]).toEqual(["http_500", true]);
  });
});

describe("leak checks", () => {
  it("flag a stack trace, SQL and a file path", () => {
    expect(
      findLeaks(
        "TypeError: x is undefined\n    at TaskStore.create (/work/main/services/tasks/dist/task-store.js:10:5)",
      ),
    ).toEqual([expect.stringMatching(/^stack trace/), expect.stringMatching(/^file path/)]);
    expect(findLeaks("SqliteError: no such table: tasks")).toEqual([expect.stringMatching(/^SQL/)]);
    expect(findLeaks("SQLITE_CONSTRAINT_UNIQUE: UNIQUE constraint failed")).toEqual([expect.stringMatching(/^SQL/)]);
    expect(findLeaks('fts5: syntax error near "\\""')).toEqual([expect.stringMatching(/^SQL/)]);
    expect(findLeaks("cannot open /tmp/taskmesh-e2e-x/tasks.db")).toEqual([expect.stringMatching(/^file path/)]);
  });

  it("flag a library's own exception text passed on to the caller", () => {
    for (const text of [
      "task.recurrence_rule: not a valid RRULE (Invalid weekday string: XX)",
      "recurrence_rule: Unknown RRULE property 'EVERY'",
      "Cannot read properties of undefined (reading 'getTime')",
      "Invalid time value",
      "Unexpected end of JSON input",
    ])
      expect(findLeaks(text)).toEqual([expect.stringMatching(/^library exception text/)]);
  });

  it("pass the messages a caller should get, and values of the caller's own echoed back", () => {
    expect(findLeaks("invalid request: task.title: must be at most 500 characters [string.max_len]")).toEqual([]);
    expect(findLeaks("unknown method /taskmesh.tasks.v1.TaskService/Nope")).toEqual([]);
    expect(findLeaks("task not found")).toEqual([]);
    expect(findLeaks("unknown time zone /etc/passwd", '{"timeZone":"/etc/passwd"}')).toEqual([]);
    // Connect's own decode error for a body that is not JSON (the protocol's, on every server).
    expect(
      findLeaks("cannot decode message taskmesh.tasks.v1.ReopenTaskRequest from JSON: Unexpected end of JSON input"),
    ).toEqual([]);
    expect(findLeaks("notes: Unexpected end of JSON input")).toEqual([expect.stringMatching(/^library exception/)]);
  });
});
