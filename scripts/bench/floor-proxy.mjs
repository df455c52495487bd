// The floor of an edge hop written in Node: a node:http2 server that hands each unary gRPC call's
// bytes to a grpc-js client (one channel, identity serialisers) and the answer back, with nothing
// else — no authentication, limits, deadlines, policy, telemetry or error mapping. The bench's
// `edge.floor.*` rows put it beside the gateway, same run, to show how much of the hop is the
// runtime's HTTP/2 and grpc-js cost rather than the gateway's own work.
// A second port does the same for Connect JSON over HTTP/1.1 (as browsers call): node:http, the JSON
// decoded and re-encoded with protobuf-es (the transcoding any Connect-to-gRPC edge must do), and
// nothing else either; the `edge.floor-connect.*` rows.
//   TARGET=127.0.0.1:port node scripts/bench/floor-proxy.mjs   (prints "ready <port> connect <port>")
import http from "node:http";
import http2 from "node:http2";
import { fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";

const id = (b) => b;
const client = new grpc.Client(process.env.TARGET, grpc.credentials.createInsecure());
const server = http2.createServer();
server.on("stream", (stream, headers) => {
  const chunks = [];
  stream.on("data", (c) => chunks.push(c));
  stream.on("end", () => {
    const md = new grpc.Metadata();
    if (headers.authorization) md.set("authorization", headers.authorization);
    const body = Buffer.concat(chunks).subarray(5);
    client.makeUnaryRequest(headers[":path"], id, id, body, md, { deadline: Date.now() + 10_000 }, (err, res) => {
      if (err) {
        stream.respond(
          { ":status": 200, "content-type": "application/grpc", "grpc-status": String(err.code) },
          { endStream: true },
        );
        return;
      }
      const frame = Buffer.allocUnsafe(5 + res.length);
      frame[0] = 0;
      frame.writeUInt32BE(res.length, 1);
      res.copy(frame, 5);
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
  });
});

const methods = new Map(TaskService.methods.map((m) => [`/${TaskService.typeName}/${m.name}`, m]));
const connect = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const method = methods.get(req.url);
    if (!method) return res.writeHead(404).end();
    const md = new grpc.Metadata();
    if (req.headers.authorization) md.set("authorization", req.headers.authorization);
    let body;
    try {
      body = toBinary(method.input, fromJson(method.input, JSON.parse(Buffer.concat(chunks).toString())));
    } catch (err) {
      res
        .writeHead(400, { "content-type": "application/json" })
        .end(JSON.stringify({ code: "invalid_argument", message: String(err) }));
      return;
    }
    client.makeUnaryRequest(req.url, Buffer.from, id, body, md, { deadline: Date.now() + 10_000 }, (err, out) => {
      const json = err
        ? JSON.stringify({ code: "unknown", message: err.details })
        : JSON.stringify(toJson(method.output, fromBinary(method.output, out)));
      res.writeHead(err ? 500 : 200, { "content-type": "application/json" }).end(json);
    });
  });
});
server.listen(0, "127.0.0.1", () =>
  connect.listen(0, "127.0.0.1", () => console.log(`ready ${server.address().port} connect ${connect.address().port}`)),
);
// Started by the bench with stdin a pipe: when the bench is gone (even killed by a signal), so is this.
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
