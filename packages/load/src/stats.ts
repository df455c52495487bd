import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";

/** The gRPC name of a code: Code.ResourceExhausted → "RESOURCE_EXHAUSTED". */
export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** The gRPC code name of whatever a call threw. */
export function errorCode(err: unknown): string {
  return codeName(ConnectError.from(err).code);
}

/** One method's calls: latency from the scheduled time (HDR histogram, µs) and errors by code. */
export class MethodStats {
  count = 0;
  ok = 0;
  readonly errors = new Map<string, number>();
  /** Every call's latency in µs: node's HDR histogram (3 significant figures). */
  readonly latency: RecordableHistogram = createHistogram();

  record(latencyMs: number, code?: string): void {
    this.count++;
    // The histogram takes integers ≥ 1.
    this.latency.record(Math.max(1, Math.round(latencyMs * 1000)));
    if (code === undefined) this.ok++;
    else this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
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
