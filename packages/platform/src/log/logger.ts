import { type Logger, pino } from "pino";

export type { Logger };

/**
 * Structured JSON logs on stdout, one line per event, with `service` on every line. LOG_LEVEL
 * picks the level (default info). Trace ids are added by the telemetry mixin when tracing is on.
 */
export function createLogger(service: string, opts: { level?: string; mixin?: () => object } = {}): Logger {
  return pino({
    level: opts.level ?? process.env.LOG_LEVEL ?? "info",
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    ...(opts.mixin ? { mixin: opts.mixin } : {}),
  });
}
