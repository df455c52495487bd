import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { Code, ConnectError } from "@connectrpc/connect";

// One validator per process: it compiles and caches the rules of each message type on first use.
const validator = createValidator();

/**
 * Checks a request against the buf.validate rules in its contract. A violation is
 * INVALID_ARGUMENT whose message names each offending field path, e.g.
 * `task.title: value length must be at least 1 characters [string.min_len]`.
 */
export function validateRequest<D extends DescMessage>(schema: D, message: MessageShape<D>): void {
  const result = validator.validate(schema, message);
  if (result.kind === "valid") return;
  if (result.kind === "invalid") {
    throw new ConnectError(
      `invalid request: ${result.violations.map((v) => v.toString()).join("; ")}`,
      Code.InvalidArgument,
    );
  }
  // A rule that fails to compile or evaluate is our bug, not the caller's.
  throw new ConnectError("request validation failed", Code.Internal, undefined, undefined, result.error);
}
