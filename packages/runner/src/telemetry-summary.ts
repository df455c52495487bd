import type { RunningSystem } from "./start-system.js";

/** What `npm start` suggests when nothing is exported: Jaeger all-in-one and the Collector take OTLP/HTTP on 4318. */
export const OTLP_HINT = "set OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to send OTLP to Jaeger/a collector";

/**
 * Where the running system's traces and metrics go, printed by `npm start` after the endpoints.
 * Taken from what each process reported at start (RunningService.telemetry), not from the
 * environment the runner passed, so a value a service refused or read differently shows as it is.
 *
 *   traces   not exported (set OTEL_EXPORTER_OTLP_ENDPOINT=… to send OTLP to Jaeger/a collector)
 *   metrics  gateway        http://127.0.0.1:9463/metrics
 *            users          http://127.0.0.1:9461/metrics
 */
export function formatTelemetry(system: Pick<RunningSystem, "services">, order?: readonly string[]): string {
  const names = (order ?? Object.keys(system.services)).filter((n) => n !== "nats" && system.services[n]);
  const traces = (name: string) => {
    const t = system.services[name]?.telemetry;
    if (!t) return "off (OTEL_SDK_DISABLED)";
    return t.traces === "none" ? `not exported (${OTLP_HINT})` : t.traces;
  };
  const pad = (s: string, n: number) => s + " ".repeat(Math.max(1, n - s.length));
  const lines: string[] = [];
  // One line when every service says the same (the usual case), else one per service.
  const distinct = [...new Set(names.map(traces))];
  if (distinct.length <= 1) lines.push(`traces   ${distinct[0] ?? "no services"}`);
  else
    for (const [i, n] of names.entries()) lines.push(`${i === 0 ? "traces   " : "         "}${pad(n, 15)}${traces(n)}`);
  for (const [i, n] of names.entries()) {
    const t = system.services[n]?.telemetry;
    lines.push(`${i === 0 ? "metrics  " : "         "}${pad(n, 15)}${t ? t.metrics : "off (OTEL_SDK_DISABLED)"}`);
  }
  return lines.join("\n");
}
