/**
 * Where a user's call came from, as the edge saw it: the gateway sets these on the calls it
 * forwards (a client's own values of these headers are never forwarded), and backends read them
 * for their audit events. Informational only: never used for a security decision.
 */
export const CLIENT_IP_HEADER = "x-taskmesh-client-ip";
export const CLIENT_AGENT_HEADER = "x-taskmesh-client-agent";

/** Longest User-Agent kept (browsers send ~150 characters; the rest is noise or abuse). */
const MAX_AGENT = 256;

export interface CallerClient {
  /** "" when unknown. */
  ipAddress: string;
  /** "" when unknown. */
  userAgent: string;
}

/**
 * The caller's address and User-Agent from the headers of a call: the gateway's
 * x-taskmesh-client-* headers, else (a direct gRPC caller) its own user-agent.
 */
export function callerClient(headers: Headers): CallerClient {
  const agent = headers.get(CLIENT_AGENT_HEADER) ?? headers.get("user-agent") ?? "";
  return { ipAddress: (headers.get(CLIENT_IP_HEADER) ?? "").slice(0, 64), userAgent: agent.slice(0, MAX_AGENT) };
}
