// The floor of an edge hop written in Node: a node:http2 server that hands each unary gRPC call's
// bytes to a grpc-js client (one channel, identity serialisers) and the answer back, with nothing
// else — no authentication, limits, deadlines, policy, telemetry or error mapping. The bench's
// `edge.floor.*` rows put it beside the gateway, same run, to show how much of the hop is the
// runtime's HTTP/2 and grpc-js cost rather than the gateway's own work.
//   TARGET=127.0.0.1:port node scripts/bench/floor-proxy.mjs   (prints "ready <port>")
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";

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
server.listen(0, "127.0.0.1", () => console.log(`ready ${server.address().port}`));
// Started by the bench with stdin a pipe: when the bench is gone (even killed by a signal), so is this.
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
