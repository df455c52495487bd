import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";
import { traceLogFields } from "../telemetry/trace-context.js";

export type { Logger };

/**
 * Structured JSON logs on stdout, one line per event, with `service` on every line. LOG_LEVEL
 * picks the level (default info). Inside a span every line carries `trace_id` and `span_id`
 * (the default mixin, `traceLogFields`; pass `mixin` to replace it).
 */
export function createLogger(
  service: string,
  opts: {
    level?: string;
    mixin?: () => object;
    /** Where lines go. Default stdout. */
    destination?: DestinationStream;
  } = {},
): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? process.env.LOG_LEVEL ?? "info",
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin: opts.mixin ?? traceLogFields,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
