import type { Protocol } from "./args.js";
import type { MethodStats, Stats } from "./stats.js";

export interface MethodRow {
  method: string;
  /** setup: Register and Login, once per user before the clock starts; mix: the open-loop load. */
  phase: "setup" | "mix";
  count: number;
  ok: number;
  /** Completed calls per second of the send window (setup rows: of the setup time). */
  throughput: number;
  /** From the scheduled time of each call (mix), so queueing in front of a slow call counts. */
  latencyMs: { p50: number; p99: number; p999: number; max: number };
  /** gRPC code name → calls that ended with it. */
  errors: Record<string, number>;
  /** The first message seen with each code in `errors`. */
  errorMessages: Record<string, string>;
}

export interface LoadReport {
  gateway: string;
  protocol: Protocol;
  users: number;
  /** Users that registered and logged in (only these send). */
  usersReady: number;
  targetRate: number;
  durationMs: number;
  /** The send window actually run (shorter after Ctrl-C). */
  elapsedMs: number;
  setupMs: number;
  interrupted: boolean;
  sent: number;
  ok: number;
  errors: number;
  /** Due calls not sent because --max-in-flight calls were in flight. */
  dropped: number;
  /** Calls still unanswered when the run stopped (not in any row). */
  abandoned: number;
  /** Calls sent per second over the send window. */
  achievedRate: number;
  methods: MethodRow[];
  streams: {
    /** Streams requested, counting every reconnection. */
    opened: number;
    /** Streams neither ended nor failed when the run stopped (one per ready user when none was lost). */
    openAtEnd: number;
    /** Streams whose response headers came (the gateway sends them with the first message). */
    answered: number;
    messages: number;
    reconnects: number;
    errors: Record<string, number>;
  };
}

const ms = (us: number) => Math.round(us / 10) / 100;

export function methodRow(method: string, phase: "setup" | "mix", m: MethodStats, windowMs: number): MethodRow {
  const h = m.latency;
  return {
    method,
    phase,
    count: m.count,
    ok: m.ok,
    throughput: windowMs > 0 ? Math.round((m.count / windowMs) * 100_000) / 100 : 0,
    latencyMs:
      m.count === 0
        ? { p50: 0, p99: 0, p999: 0, max: 0 }
        : { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), p999: ms(h.percentile(99.9)), max: ms(h.max) },
    errors: Object.fromEntries(m.errors),
    errorMessages: Object.fromEntries(m.messages),
  };
}

export function streamSummary(stats: Stats): LoadReport["streams"] {
  const s = stats.streams;
  return {
    opened: s.opened,
    openAtEnd: s.open,
    answered: s.answered,
    messages: s.messages,
    reconnects: s.reconnects,
    errors: Object.fromEntries(s.errors),
  };
}

function errorText(errors: Record<string, number>): string {
  const parts = Object.entries(errors)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${n}`);
  return parts.length === 0 ? "-" : parts.join(", ");
}

/** The table printed at the end: one row per method, then totals and the streams. */
export function formatTable(r: LoadReport): string {
  const header = ["method", "count", "req/s", "p50 ms", "p99 ms", "p999 ms", "max ms", "errors"];
  const rows = r.methods.map((m) => [
    m.phase === "setup" ? `${m.method} (setup)` : m.method,
    String(m.count),
    m.throughput.toFixed(1),
    m.latencyMs.p50.toFixed(1),
    m.latencyMs.p99.toFixed(1),
    m.latencyMs.p999.toFixed(1),
    m.latencyMs.max.toFixed(1),
    errorText(m.errors),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) =>
        i === 0 || i === cells.length - 1 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number),
      )
      .join("  ")
      .trimEnd();
  const s = r.streams;
  return [
    `taskmesh load: ${r.gateway} (${r.protocol}), ${r.usersReady}/${r.users} users, target ${r.targetRate} req/s for ${r.durationMs / 1000} s${r.interrupted ? " (interrupted)" : ""}`,
    line(header),
    line(header.map((_, i) => "-".repeat(widths[i] as number))),
    ...rows.map(line),
    "",
    `sent ${r.sent} in ${(r.elapsedMs / 1000).toFixed(1)} s = ${r.achievedRate.toFixed(1)} req/s (target ${r.targetRate}); ok ${r.ok}, errors ${r.errors}, dropped ${r.dropped}, abandoned ${r.abandoned}`,
    `notification streams: ${s.openAtEnd} open at the end, ${s.opened} opened, ${s.answered} answered, ${s.reconnects} reconnects, ${s.messages} messages, errors ${errorText(s.errors)}`,
    "latency is measured from each call's scheduled time (open loop), so queueing is included",
    "",
  ].join("\n");
}
