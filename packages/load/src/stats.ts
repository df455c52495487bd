import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";

/** The gRPC name of a code: Code.ResourceExhausted → "RESOURCE_EXHAUSTED". */
export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/**
 * The gRPC code name of whatever a call threw. RESOURCE_EXHAUSTED says which kind: the gateway's
 * per-user or login rate limit (it sends retry-after; raise RATE_LIMIT_RPS etc. for a load run) or
 * a backend's bulkhead full (the system is overloaded: that is a finding, not a setting).
 */
export function errorCode(err: unknown): string {
  const e = ConnectError.from(err);
  const name = codeName(e.code);
  if (e.code !== Code.ResourceExhausted) return name;
  return e.metadata.has("retry-after") || /rate limit|too many sign/.test(e.rawMessage)
    ? `${name} (rate limit)`
    : `${name} (overloaded)`;
}

/** One method's calls: latency from the scheduled time (HDR histogram, µs) and errors by code. */
export class MethodStats {
  count = 0;
  ok = 0;
  readonly errors = new Map<string, number>();
  /** The first message seen with each code, to tell causes apart. */
  readonly messages = new Map<string, string>();
  /** Every call's latency in µs: node's HDR histogram (3 significant figures). */
  readonly latency: RecordableHistogram = createHistogram();

  record(latencyMs: number, code?: string, message?: string): void {
    this.count++;
    // The histogram takes integers ≥ 1.
    this.latency.record(Math.max(1, Math.round(latencyMs * 1000)));
    if (code === undefined) this.ok++;
    else {
      this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
      if (message !== undefined && !this.messages.has(code)) this.messages.set(code, message);
    }
  }
}

/** What the run saw: per method, the streams, and the totals the progress line shows. */
export class Stats {
  readonly methods = new Map<string, MethodStats>();
  sent = 0;
  ok = 0;
  failed = 0;
  inFlight = 0;
  /** Due calls not sent because --max-in-flight calls were already in flight. */
  dropped = 0;
  readonly streams = { opened: 0, open: 0, answered: 0, messages: 0, reconnects: 0, errors: new Map<string, number>() };

  method(name: string): MethodStats {
    let m = this.methods.get(name);
    if (!m) {
      m = new MethodStats();
      this.methods.set(name, m);
    }
    return m;
  }

  streamError(code: string): void {
    this.streams.errors.set(code, (this.streams.errors.get(code) ?? 0) + 1);
  }
}
