import { parseArgs } from "node:util";

export const USAGE = `usage: npm run load -- --users N --rate R --duration D [options]
  --users N          virtual users, each registered and logged in once, each with a live
                     WatchNotifications stream (1..100000)
  --rate R           target requests per second over all users, open loop (0.1..100000)
  --duration D       how long to send, e.g. 30s, 2m, 1500ms (100ms..24h)
  --gateway URL      the gateway (default http://127.0.0.1:8080)
  --protocol P       grpc (HTTP/2 h2c) or connect (Connect over HTTP/1.1) (default grpc)
  --json FILE        also write the report as JSON to FILE
  --timeout D        deadline of each call (default 10s)
  --max-in-flight N  calls in flight beyond which a due call is dropped and counted (default 10000)
  --quiet            no progress lines on stderr
  --help             this text`;

export type Protocol = "grpc" | "connect";

export interface LoadOptions {
  users: number;
  /** Requests per second over all users. */
  rate: number;
  durationMs: number;
  /** Default http://127.0.0.1:8080. */
  gateway: string;
  /** Default grpc. */
  protocol: Protocol;
  /** Write the JSON report here. Default: none. */
  json?: string;
  /** Per-call deadline. Default 10000 ms. */
  timeoutMs: number;
  /** Default 10000. */
  maxInFlight: number;
  /** No progress lines. Default false. */
  quiet: boolean;
}

/** A flag the user got wrong: the CLI prints the message and the usage, and exits 2. */
export class UsageError extends Error {}

/** "1500", "1500ms", "30s", "2m", "1h" → ms. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new UsageError(`--${flag}: "${value}" is not a duration (e.g. 500ms, 30s, 2m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "ms") as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

function number(flag: string, value: string, min: number, max: number, integer: boolean): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    throw new UsageError(`--${flag}: "${value}" must be a ${integer ? "whole " : ""}number from ${min} to ${max}`);
  }
  return n;
}

/** Parses the command line; `undefined` means --help. Throws UsageError on a bad flag. */
export function parseLoadArgs(argv: readonly string[]): LoadOptions | undefined {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        users: { type: "string" },
        rate: { type: "string" },
        duration: { type: "string" },
        gateway: { type: "string", default: "http://127.0.0.1:8080" },
        protocol: { type: "string", default: "grpc" },
        json: { type: "string" },
        timeout: { type: "string", default: "10s" },
        "max-in-flight": { type: "string", default: "10000" },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return undefined;
  for (const required of ["users", "rate", "duration"]) {
    if (values[required] === undefined) throw new UsageError(`--${required} is required`);
  }
  const gateway = String(values.gateway);
  let url: URL;
  try {
    url = new URL(gateway);
  } catch {
    throw new UsageError(`--gateway: "${gateway}" is not a URL (e.g. http://127.0.0.1:8080)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--gateway: "${gateway}" must be an http:// or https:// URL`);
  }
  const protocol = String(values.protocol);
  if (protocol !== "grpc" && protocol !== "connect") {
    throw new UsageError(`--protocol: "${protocol}" must be grpc or connect`);
  }
  const durationMs = parseDuration("duration", String(values.duration));
  if (durationMs < 100 || durationMs > 86_400_000) throw new UsageError("--duration: must be from 100ms to 24h");
  const timeoutMs = parseDuration("timeout", String(values.timeout));
  if (timeoutMs < 10 || timeoutMs > 600_000) throw new UsageError("--timeout: must be from 10ms to 10m");
  if (values.json === "") throw new UsageError("--json: needs a file name");
  return {
    users: number("users", String(values.users), 1, 100_000, true),
    rate: number("rate", String(values.rate), 0.1, 100_000, false),
    durationMs,
    gateway: gateway.replace(/\/+$/, ""),
    protocol,
    ...(values.json === undefined ? {} : { json: String(values.json) }),
    timeoutMs,
    maxInFlight: number("max-in-flight", String(values["max-in-flight"]), 1, 10_000_000, true),
    quiet: values.quiet === true,
  };
}
