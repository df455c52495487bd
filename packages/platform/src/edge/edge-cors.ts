import type { IncomingMessage, ServerResponse } from "node:http";
import { cors as connectCors } from "@connectrpc/connect";
import cors from "cors";

/**
 * CORS for web clients hosted on another origin than the gateway. Only the listed origins get
 * Access-Control-Allow-Origin (none listed: same origin only, no CORS headers at all). Preflight
 * allows what Connect and gRPC-Web send (connect's `cors` constants) plus the bearer token;
 * responses expose grpc-status/grpc-message/grpc-status-details-bin, the Connect encodings and
 * x-trace-id, so a client on another origin reads errors as a same-origin one does.
 */
export function edgeCors(
  allowedOrigins: readonly string[],
): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return cors({
    origin: [...allowedOrigins],
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "X-Request-Id"],
    exposedHeaders: [...connectCors.exposedHeaders, "X-Trace-Id", "Retry-After"],
    // Preflight answers are cached by the browser for 2 hours (Chromium's upper bound).
    maxAge: 7200,
  }) as never;
}
