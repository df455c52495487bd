import {
  type Attributes,
  type Counter,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  type ObservableGauge,
} from "@opentelemetry/api";

/**
 * The meter services register their own instruments on (breaker state, reminders pending, ...):
 * `meter().createObservableGauge("taskmesh.breaker.state", ...)`. Call it when the instrument is
 * created, after telemetry started: before that (or with metrics off) it is the API's no-op meter.
 */
export function meter(name = "taskmesh"): Meter {
  return metrics.getMeter(name);
}

/**
 * Instruments the platform records into, created once per MeterProvider (the global API has no
 * proxy meter: instruments made before `startTelemetry` would stay no-ops forever, so they are
 * looked up per call — one WeakMap get).
 *
 * Prometheus names (the exporter turns dots into underscores and adds `_total` to counters, the
 * exporter does not add units, so the histogram names its unit):
 * - rpc_server_requests_total{rpc_system, rpc_service, rpc_method}
 * - rpc_server_errors_total{rpc_system, rpc_service, rpc_method, rpc_code} (rpc_code e.g. "NOT_FOUND")
 * - rpc_server_duration_seconds{rpc_system, rpc_service, rpc_method, rpc_code} (histogram; code "OK" on success)
 * - taskmesh_outbox_backlog (gauge: events not yet published, per relay)
 * - taskmesh_outbox_published_total
 * - taskmesh_outbox_reconcile_checked_total, taskmesh_outbox_republished_total (reconciler: rows
 *   checked against the stream, events the stream had lost and that were published again)
 * - taskmesh_consumer_deliveries_total{consumer, outcome} (applied, duplicate, retried, dead_lettered)
 * - taskmesh_consumer_dead_letters_total{consumer}
 * - taskmesh_consumer_lag{consumer} (gauge: messages pending for the consumer at its last delivery)
 * - taskmesh_retention_pruned_rows_total{table, consumer} (inbox rows, fired timers deleted past their horizon)
 */
export interface PlatformInstruments {
  requests: Counter;
  errors: Counter;
  duration: Histogram;
  outboxBacklog: ObservableGauge;
  outboxPublished: Counter;
  outboxReconcileChecked: Counter;
  outboxRepublished: Counter;
  deliveries: Counter;
  deadLetters: Counter;
  consumerLag: ObservableGauge;
  breakerState: ObservableGauge;
  retentionPruned: Counter;
}

const byProvider = new WeakMap<MeterProvider, PlatformInstruments>();

export function platformInstruments(): PlatformInstruments {
  const provider = metrics.getMeterProvider();
  let i = byProvider.get(provider);
  if (!i) {
    const m = provider.getMeter("taskmesh.platform");
    i = {
      requests: m.createCounter("rpc.server.requests", { description: "RPCs received, by method" }),
      errors: m.createCounter("rpc.server.errors", { description: "RPCs answered with a status other than OK" }),
      duration: m.createHistogram("rpc.server.duration.seconds", {
        description: "Time to answer an RPC",
        unit: "s",
        advice: { explicitBucketBoundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] },
      }),
      outboxBacklog: m.createObservableGauge("taskmesh.outbox.backlog", {
        description: "Events committed to the outbox and not yet published",
      }),
      outboxPublished: m.createCounter("taskmesh.outbox.published", {
        description: "Events published from the outbox",
      }),
      outboxReconcileChecked: m.createCounter("taskmesh.outbox.reconcile.checked", {
        description: "Published outbox rows checked against their stream by the reconciler",
      }),
      outboxRepublished: m.createCounter("taskmesh.outbox.republished", {
        description: "Events the stream had lost after acknowledging them, published again",
      }),
      deliveries: m.createCounter("taskmesh.consumer.deliveries", {
        description: "Event deliveries handled, by outcome",
      }),
      deadLetters: m.createCounter("taskmesh.consumer.dead_letters", { description: "Events sent to dead-letter" }),
      consumerLag: m.createObservableGauge("taskmesh.consumer.lag", {
        description: "Messages pending for the consumer when it last received one",
      }),
      breakerState: m.createObservableGauge("taskmesh.breaker.state", {
        description: "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open, 3 isolated",
      }),
      retentionPruned: m.createCounter("taskmesh.retention.pruned_rows", {
        description: "Rows deleted past their retention horizon, by table",
      }),
    };
    byProvider.set(provider, i);
  }
  return i;
}

/** Records one answered RPC: count, error by code, duration (RED). `code` is the upper-snake status name. */
export function recordRpc(
  system: "grpc" | "connect_rpc",
  service: string,
  method: string,
  code: string,
  seconds: number,
): void {
  const i = platformInstruments();
  const base: Attributes = { "rpc.system": system, "rpc.service": service, "rpc.method": method };
  i.requests.add(1, base);
  if (code !== "OK") i.errors.add(1, { ...base, "rpc.code": code });
  i.duration.record(seconds, { ...base, "rpc.code": code });
}
