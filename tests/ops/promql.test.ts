import { describe, expect, it } from "vitest";
import { grafanaToPromql, metricNames } from "./promql.js";

describe("metricNames (metric names a PromQL expression reads)", () => {
  it("finds selectors and skips functions, grouping labels, matchers, ranges and keywords", () => {
    expect(
      metricNames(
        'sum by (service, le) (rate(rpc_server_duration_seconds_bucket{service=~"a|b"}[5m])) / on (service) group_left up offset 15m',
      ),
    ).toEqual(["rpc_server_duration_seconds_bucket", "up"]);
    expect(metricNames("service:rpc_server_error_ratio:rate1h > (14.4 * 0.001) and x:y:z > 1e3")).toEqual([
      "service:rpc_server_error_ratio:rate1h",
      "x:y:z",
    ]);
  });

  it("returns a misspelt name as it is written, so a check against live names catches it", () => {
    expect(metricNames("rate(rpc_server_request_total[1m])")).toEqual(["rpc_server_request_total"]);
  });
});

describe("grafanaToPromql", () => {
  it("replaces the rate interval and the service variable at All", () => {
    expect(grafanaToPromql('rate(x{service=~"$service"}[$__rate_interval])')).toBe('rate(x{service=~".*"}[1m])');
  });
});
