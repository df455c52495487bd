import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";

/**
 * The one mapping from anything a handler throws to a status a caller can act on.
 * ConnectError passes through unchanged (so a backend's code reaches the edge's caller as-is);
 * SQLite uniqueness → ALREADY_EXISTS; busy/locked → UNAVAILABLE (retriable); aborts → CANCELLED
 * or DEADLINE_EXCEEDED; everything else → INTERNAL with the cause logged and not leaked (no
 * stack, SQL or file path ever reaches a caller).
 */
export function toRpcError(err: unknown, log?: Logger, signal?: AbortSignal): ConnectError {
  if (err instanceof ConnectError) return err;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && code.startsWith("SQLITE_")) {
    if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY")
      return new ConnectError("already exists", Code.AlreadyExists);
    if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED")
      return new ConnectError("storage busy, retry", Code.Unavailable);
  }
  if (signal?.aborted || (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError"))) {
    const reason = signal?.reason as { name?: string } | undefined;
    return reason?.name === "TimeoutError" || (err instanceof Error && err.name === "TimeoutError")
      ? new ConnectError("deadline exceeded", Code.DeadlineExceeded)
      : new ConnectError("cancelled", Code.Canceled);
  }
  log?.error({ err }, "unhandled error in handler");
  return new ConnectError("internal error", Code.Internal);
}

/** Canonical upper-snake name of a code, as grpc-status names it (e.g. "NOT_FOUND"). */
export function codeName(code: Code): string {
  return (Code[code] ?? "Unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
