import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { Validator } from "@bufbuild/protovalidate";
import { Code, ConnectError } from "@connectrpc/connect";

// One validator per process: it compiles and caches the rules of each message type on first use.
// Imported with the first request, not at start: protovalidate and its CEL interpreter were ~10 %
// of a service's start-up CPU, and the gateway, which imports this module, never validates.
let validator: Validator | undefined;
let loading: Promise<Validator> | undefined;

function loadValidator(): Promise<Validator> {
  loading ??= import("@bufbuild/protovalidate").then((m) => {
    validator = m.createValidator();
    return validator;
  });
  // A failed import is not kept: the next request tries again.
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}

/**
 * Checks a request against the buf.validate rules in its contract. A violation is
 * INVALID_ARGUMENT whose message names each offending field path, e.g.
 * `task.title: value length must be at least 1 characters [string.min_len]`.
 */
export async function validateRequest<D extends DescMessage>(schema: D, message: MessageShape<D>): Promise<void> {
  const result = (validator ?? (await loadValidator())).validate(schema, message);
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
