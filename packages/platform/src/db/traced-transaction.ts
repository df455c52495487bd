import { basename } from "node:path";
import { type Attributes, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Db } from "./database.js";

/**
 * Runs `work` (synchronous SQLite work, typically a `db.transaction(...)` call) and records it as
 * a CLIENT span "sqlite transaction" (OpenTelemetry database conventions: `db.system.name`
 * "sqlite", `db.namespace` the database file's name), child of the active span — so a reader of a
 * consumer's trace sees how long the commit took next to its external calls.
 *
 * The span is recorded but NOT made active: whatever `work` does (appending an event that stores
 * the active context, say) still happens in the caller's span, so the event's PRODUCER span stays
 * the child of the consumer's span, not of a storage detail.
 */
export function tracedTransaction<T>(db: Db, attributes: Attributes, work: () => T): T {
  const span = trace.getTracer("taskmesh.sqlite").startSpan("sqlite transaction", {
    kind: SpanKind.CLIENT,
    attributes: { "db.system.name": "sqlite", "db.namespace": basename(db.name), ...attributes },
  });
  try {
    return work();
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}
