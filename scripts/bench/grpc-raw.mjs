// The cheapest grpc-js client and server plumbing: one channel, protobuf-es (de)serialisation,
// nothing else (no interceptors, retries or tracing). Used for the baselines and, so the client
// side costs the same in every row, for the gRPC rows through the gateway too.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

const ser = (schema) => (m) => Buffer.from(toBinary(schema, m));
const de = (schema) => (b) => fromBinary(schema, b);

/** `call(method, request, token) → Promise<response>` over one grpc-js channel to `address` (host:port). */
export function rawClient(address) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const call = (method, req, token, timeoutMs = 10_000) =>
    new Promise((resolve, reject) => {
      const md = new grpc.Metadata();
      if (token) md.set("authorization", `Bearer ${token}`);
      client.makeUnaryRequest(
        `/${method.parent.typeName}/${method.name}`,
        ser(method.input),
        de(method.output),
        req,
        md,
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err ? reject(err) : resolve(res)),
      );
    });
  return { call, close: () => client.close() };
}

/** A grpc-js service definition for `methods` (unary) of a protobuf-es service descriptor. */
export function rawDefinition(service, names) {
  const def = {};
  for (const m of service.methods) {
    if (!names.includes(m.localName)) continue;
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: ser(m.input),
      requestDeserialize: de(m.input),
      responseSerialize: ser(m.output),
      responseDeserialize: de(m.output),
    };
  }
  return def;
}
