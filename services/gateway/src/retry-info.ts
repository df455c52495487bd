import { create, createFileRegistry, type DescMessage } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
} from "@bufbuild/protobuf/wkt";

/**
 * `google.rpc.RetryInfo` (googleapis google/rpc/error_details.proto), the standard error detail
 * telling a client how long to wait before retrying:
 *
 *     message RetryInfo { google.protobuf.Duration retry_delay = 1; }
 *
 * Our generated code has no googleapis protos, and pulling them in would change the contracts
 * for one message, so its descriptor is built here, field for field as upstream: the wire and
 * JSON forms are the real ones (type URL `type.googleapis.com/google.rpc.RetryInfo`), and any
 * client with googleapis' RetryInfo (grpc-go, grpc-java, connect `findDetails`) decodes it.
 */
export const RetryInfoSchema: DescMessage = (() => {
  const file = create(FileDescriptorProtoSchema, {
    name: "google/rpc/error_details.proto",
    package: "google.rpc",
    dependency: ["google/protobuf/duration.proto"],
    syntax: "proto3",
    messageType: [
      {
        name: "RetryInfo",
        field: [
          {
            name: "retry_delay",
            jsonName: "retryDelay",
            number: 1,
            label: FieldDescriptorProto_Label.OPTIONAL,
            type: FieldDescriptorProto_Type.MESSAGE,
            typeName: ".google.protobuf.Duration",
          },
        ],
      },
    ],
  });
  const registry = createFileRegistry(file, (name) =>
    name === "google/protobuf/duration.proto" ? file_google_protobuf_duration : undefined,
  );
  const desc = registry.getMessage("google.rpc.RetryInfo");
  if (!desc) throw new Error("google.rpc.RetryInfo descriptor missing");
  return desc;
})();

/** A RetryInfo detail for ConnectError: retry after `ms` (whole milliseconds, as seconds + nanos). */
export function retryInfo(ms: number): {
  desc: DescMessage;
  value: { retryDelay: { seconds: bigint; nanos: number } };
} {
  const whole = Math.max(0, Math.ceil(ms));
  return {
    desc: RetryInfoSchema,
    value: { retryDelay: { seconds: BigInt(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 } },
  };
}
