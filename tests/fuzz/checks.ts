// What counts as a failure in an answer, kept apart from the driver so it can be tested alone.
import type { Outcome } from "./transport.js";

const LEAKS: ReadonlyArray<readonly [string, RegExp]> = [
  ["stack trace", /\n\s+at\s+\S|\bat (?:async )?[\w$.<>[\] ]+ \((?:file:|node:|\/)[^)]*\)|:\d+:\d+\)?\s*$/m],
  [
    "SQL",
    /\bSQLITE_[A-Z_]+|\bSqliteError\b|better-sqlite3|no such (?:table|column)|near "[^"]*": syntax error|fts5: |\b(?:SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b[^\n]{0,120}\b(?:FROM|VALUES|WHERE|SET)\b/,
  ],
  [
    "file path",
    /(?:^|[\s"'(=:,])\/(?:home|work|tmp|usr|var|etc|opt|root|proc|srv|app)\/[^\s"')]+|node_modules|file:\/\/\/|\b[A-Za-z]:\\[^\s]+|\.(?:ts|js|mjs|cjs):\d+/,
  ],
  [
    // A library's or V8's own exception text passed on as our message (rrule's parser, JSON, Date).
    // Not Connect's own answer to a body that is not JSON ("cannot decode message <type> from
    // JSON: <parser's reason>"): that is the protocol's decode error, the same from every Connect
    // server, and it names what to fix; JSON parser text anywhere else is ours leaking.
    "library exception text",
    /Invalid weekday string|Unknown RRULE property|Invalid (?:rrule|RRULE|frequency|UNTIL) value|Unsupported RFC prop|Cannot read properties of|Cannot convert (?:a |undefined|null)|is not a function|is not iterable|Invalid time value|Maximum call stack size|Invalid array length|(?<!cannot decode message [\w.]+ from JSON: )(?:Unexpected token .* in JSON|Unexpected end of JSON input)/,
  ],
];

/** INTERNAL, UNKNOWN or DATA_LOSS (a server fault, not the caller's), or a plain HTTP 500. */
export function isFailure(o: Pick<Outcome, "code" | "httpStatus">): boolean {
  return o.code === "internal" || o.code === "unknown" || o.code === "data_loss" || o.httpStatus === 500;
}

/** No status at all: the server hung, reset or answered gRPC without grpc-status. */
export function isNoAnswer(o: Pick<Outcome, "code">): boolean {
  return o.code === "timeout" || o.code === "transport_error" || o.code === "no_status";
}

/**
 * What an error text gives away about the server: a stack trace, SQL, a file path. `echoed` is
 * the request as text: a value of ours repeated in the message (a time zone named
 * "/etc/passwd/x") is not a leak.
 */
export function findLeaks(errorText: string, echoed = ""): string[] {
  const out: string[] = [];
  for (const [what, re] of LEAKS) {
    const m = re.exec(errorText);
    if (m && !echoed.includes(m[0].trim())) out.push(`${what} in the error: ${JSON.stringify(m[0].trim())}`);
  }
  return out;
}
