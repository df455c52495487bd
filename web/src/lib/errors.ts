import { create, createFileRegistry, type DescMessage, fromBinary } from "@bufbuild/protobuf";
import {
  type Duration,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * google.rpc.RetryInfo, which the gateway attaches to RESOURCE_EXHAUSTED (rate limits). Our
 * generated code has no googleapis protos, so the one message is described here, field for field
 * as upstream (as services/gateway/src/retry-info.ts does on the server side).
 */
const RetryInfoSchema: DescMessage = (() => {
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
  const registry = createFileRegistry(file, () => file_google_protobuf_duration);
  return registry.getMessage("google.rpc.RetryInfo") as DescMessage;
})();

export interface Problem {
  /** One sentence for a person. */
  message: string;
  /** INVALID_ARGUMENT: message per field (last path segment, e.g. "title", "webhook_url"). */
  fields: Record<string, string>;
  /** The gateway could not be reached at all (network error, or it answered 502/503 with no RPC status). */
  unreachable: boolean;
  /** RESOURCE_EXHAUSTED with RetryInfo: seconds to wait. */
  retryAfterSeconds?: number;
  code?: Code;
}

/** Turns any error of a call into words (and the fields it is about). */
export function describeError(err: unknown): Problem {
  const e = ConnectError.from(err);
  const base: Problem = { message: e.rawMessage, fields: {}, unreachable: false, code: e.code };
  switch (e.code) {
    case Code.InvalidArgument: {
      // "invalid request: task.title: value length must be ... [string.min_len]; ..." or "task.due_time: ...".
      const parts = e.rawMessage.replace(/^invalid request:\s*/, "").split("; ");
      const sentences: string[] = [];
      for (const p of parts) {
        const m = /^([\w.[\]]+): (.*?)(?: \[[\w.]+\])?$/.exec(p);
        const path = m?.[1];
        const text = m?.[2] ?? p;
        const field =
          path
            ?.split(".")
            .pop()
            ?.replace(/\[\d+\]$/, "") ?? /^(\w+) must/.exec(p)?.[1];
        if (field) base.fields[field] = text;
        sentences.push(field ? `${field.replace(/_/g, " ")}: ${text}` : text);
      }
      return { ...base, message: sentences.join("; ") };
    }
    case Code.ResourceExhausted: {
      const info = e.findDetails(RetryInfoSchema)[0] as { retryDelay?: Duration } | undefined;
      let seconds = info?.retryDelay
        ? Math.ceil(Number(info.retryDelay.seconds) + info.retryDelay.nanos / 1e9)
        : undefined;
      if (seconds === undefined) {
        // Connect puts retry details in the body; a raw detail may still need decoding.
        const raw = e.details.find((d) => "type" in d && d.type === "google.rpc.RetryInfo") as
          | { value: Uint8Array }
          | undefined;
        if (raw) {
          const decoded = fromBinary(RetryInfoSchema, raw.value) as { retryDelay?: Duration };
          if (decoded.retryDelay) seconds = Math.max(1, Math.ceil(Number(decoded.retryDelay.seconds)));
        }
      }
      const after = seconds ?? Number(e.metadata.get("retry-after") ?? Number.NaN);
      return Number.isFinite(after)
        ? { ...base, retryAfterSeconds: after, message: `Too many attempts, try again in ${Math.max(1, after)} s.` }
        : { ...base, message: "Too many attempts, try again shortly." };
    }
    case Code.Unauthenticated:
      return { ...base, message: "You are signed out. Sign in again." };
    case Code.PermissionDenied:
      return { ...base, message: "That is not allowed for your account." };
    case Code.NotFound:
      return { ...base, message: "That no longer exists." };
    case Code.AlreadyExists:
      return { ...base, message: e.rawMessage || "That already exists." };
    case Code.FailedPrecondition:
    case Code.Aborted:
      return { ...base, message: e.rawMessage || "That changed meanwhile; reload and try again." };
    case Code.DeadlineExceeded:
      return { ...base, message: "The server took too long to answer. Try again." };
    case Code.Unavailable:
    case Code.Unknown:
    case Code.Internal:
      // fetch() failing (gateway down, network gone) surfaces as UNAVAILABLE/UNKNOWN with a TypeError cause.
      if (isNetworkFailure(e))
        return { ...base, unreachable: true, message: "Cannot reach the taskmesh server. Check your connection." };
      return {
        ...base,
        message:
          e.code === Code.Unavailable
            ? "The service is temporarily unavailable. Try again in a moment."
            : "Something went wrong on the server.",
      };
    default:
      return base;
  }
}

export function isNetworkFailure(e: ConnectError): boolean {
  if (e.cause instanceof TypeError) return true;
  return /failed to fetch|networkerror|load failed|fetch failed|HTTP 50[234]/i.test(e.rawMessage);
}
