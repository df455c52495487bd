// npm run prometheus:config [-- --host <h>] [--interval 15s]: prints a Prometheus configuration that
// scrapes a running `npm start` (TOPOLOGY's metrics ports; not with --free-ports) with the label
// `service` per target and loads mesh/observability/rules.yml. Then, for example:
//   npm run -s prometheus:config > .data/prometheus.yml
//   prometheus --config.file=.data/prometheus.yml --storage.tsdb.path=.data/prometheus --web.listen-address=127.0.0.1:9090
import { parseArgs } from "node:util";
import { defaultMetricsUrls, prometheusConfig } from "@taskmesh/runner";

const { values } = parseArgs({ options: { host: { type: "string" }, interval: { type: "string" } } });
if (values.interval !== undefined && !/^\d+(ms|s|m|h)$/.test(values.interval)) {
  console.error(
    `prometheus:config: --interval takes a Prometheus duration such as 15s, got ${JSON.stringify(values.interval)}`,
  );
  process.exit(2);
}
process.stdout.write(prometheusConfig(defaultMetricsUrls(values.host), { interval: values.interval ?? "15s" }));
