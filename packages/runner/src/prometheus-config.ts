import { join } from "node:path";
import { type ServiceName, TOPOLOGY } from "@taskmesh/platform/topology";
import { REPO_ROOT } from "./start-system.js";

/** Options of {@link prometheusConfig}. */
export interface PrometheusConfigOptions {
  /** scrape_interval and evaluation_interval. Default "15s" (tests use "1s"). */
  interval?: string;
  /** Rule files to load. Default: mesh/observability/rules.yml of this repository. */
  ruleFiles?: readonly string[];
}

/**
 * A Prometheus configuration scraping taskmesh's processes: one job `taskmesh`, one target per
 * process, each with the label `service` (the process name without its replica suffix: `tasks.2`
 * → `tasks`), which the rules and dashboards group by, as the mesh's PodMonitor sets it from the
 * pod's `app` label. `metrics` maps process names to their `http://host:port/path` metrics URLs
 * (`RunningSystem.endpoints.metrics`, or {@link defaultMetricsUrls} for a plain `npm start`).
 * Returned as JSON, which is YAML, so Prometheus reads it as its config file.
 */
export function prometheusConfig(metrics: Record<string, string>, opts: PrometheusConfigOptions = {}): string {
  const interval = opts.interval ?? "15s";
  const static_configs = Object.entries(metrics)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([process, url]) => {
      const u = new URL(url);
      // Every process serves GET /metrics (packages/platform/src/telemetry); say so if one does not.
      if (u.pathname !== "/metrics") throw new Error(`${process}: metrics URL ${url} is not <host:port>/metrics`);
      return { targets: [u.host], labels: { service: process.replace(/\.\d+$/, ""), process } };
    });
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    rule_files: opts.ruleFiles ?? [join(REPO_ROOT, "mesh/observability/rules.yml")],
    scrape_configs: [{ job_name: "taskmesh", metrics_path: "/metrics", static_configs }],
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** The metrics URLs `npm start` uses without --free-ports: TOPOLOGY's metrics port of each built service. */
export function defaultMetricsUrls(host = "127.0.0.1"): Record<string, string> {
  const urls: Record<string, string> = {};
  for (const [name, topo] of Object.entries(TOPOLOGY) as Array<[ServiceName, (typeof TOPOLOGY)[ServiceName]]>) {
    if (topo.built) urls[name] = `http://${host}:${topo.metricsPort}/metrics`;
  }
  return urls;
}
