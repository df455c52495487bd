/**
 * The Prometheus rules (mesh/observability/rules.yml) pass `promtool check rules` and their unit
 * tests (`promtool test rules`), a broken copy fails both, and the mesh's PrometheusRule and
 * dashboards ConfigMap are exactly the plain sources (scripts/observability.mjs). The prod overlay
 * carries them, the gateway HPA and its PodDisruptionBudget.
 */
import { execFile } from "node:child_process";
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "@taskmesh/platform/testing";
import { REPO_ROOT } from "@taskmesh/runner";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { Resource } from "../mesh/lib/kustomize.js";
import { get, renderOverlay } from "../mesh/lib/overlays.js";
import { promtool, RULES_DIR, RULES_FILE, readRuleGroups } from "./promtool.js";

const COMPONENT = join(REPO_ROOT, "mesh/components/observability");
const scratch = tempDir("taskmesh-rules-");
afterAll(() => scratch.remove());

describe("Prometheus rules (mesh/observability/rules.yml)", () => {
  it("pass promtool check rules", async () => {
    const { code, output } = await promtool(["check", "rules", RULES_FILE]);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
    expect(code).toBe(0);
  });

  it("pass their unit tests (promtool test rules rules.test.yml)", async () => {
    const { code, output } = await promtool(["test", "rules", "rules.test.yml"], RULES_DIR);
    expect(output).toContain("SUCCESS");
    expect(code).toBe(0);
  });

  it("fail promtool check when an expression is malformed", async () => {
    const broken = join(scratch.path, "broken.yml");
    writeFileSync(broken, readFileSync(RULES_FILE, "utf8").replace("max by (service, dependency)", "max by service"));
    const { code, output } = await promtool(["check", "rules", broken]);
    expect(code).not.toBe(0);
    expect(output).toMatch(/TaskmeshBreakerOpen|parse error|unexpected/);
  });

  it("fail their unit tests when an alert's condition is weakened", async () => {
    // Breaker open from state 3 (isolated) only: the test expecting state 2 to fire must fail.
    copyFileSync(join(RULES_DIR, "rules.test.yml"), join(scratch.path, "rules.test.yml"));
    writeFileSync(
      join(scratch.path, "rules.yml"),
      readFileSync(RULES_FILE, "utf8").replace("(taskmesh_breaker_state) >= 2", "(taskmesh_breaker_state) >= 3"),
    );
    const { code, output } = await promtool(["test", "rules", "rules.test.yml"], scratch.path);
    expect(code).not.toBe(0);
    expect(output).toMatch(/alertname: TaskmeshBreakerOpen/);
  });

  it("group by the one target label `service` and cover every alert the runbook needs", () => {
    const rules = readRuleGroups().flatMap((g) => g.rules);
    const alerts = rules.flatMap((r) => (r.alert ? [r.alert] : []));
    expect(alerts).toEqual(
      expect.arrayContaining([
        "TaskmeshErrorBudgetBurnFast",
        "TaskmeshErrorBudgetBurnSlow",
        "TaskmeshOutboxBacklogGrowing",
        "TaskmeshDeadLetters",
        "TaskmeshConsumerLagHigh",
        "TaskmeshServiceDown",
        "TaskmeshBreakerOpen",
      ]),
    );
    for (const r of rules) {
      // Every aggregation keeps `service`, so an alert always says which service.
      for (const m of r.expr.matchAll(/\b(?:sum|max|min|avg) by \(([^)]*)\)/g)) {
        expect(
          (m[1] as string).split(",").map((s) => s.trim()),
          `${r.record ?? r.alert}: ${m[0]}`,
        ).toContain("service");
      }
      if (r.alert) expect(r.labels?.severity, r.alert).toMatch(/^(critical|warning)$/);
    }
  });
});

describe("mesh component observability", () => {
  it("is generated from mesh/observability (node scripts/observability.mjs --check)", async () => {
    const out = await new Promise<{ code: number; output: string }>((resolve) =>
      execFile("node", ["scripts/observability.mjs", "--check"], { cwd: REPO_ROOT }, (err, stdout, stderr) =>
        resolve({ code: err ? Number(err.code ?? 1) : 0, output: stdout + stderr }),
      ),
    );
    expect(out.output).toBe("");
    expect(out.code).toBe(0);
  });

  it("has a PrometheusRule whose groups equal the plain rules file's", () => {
    const rule = parse(readFileSync(join(COMPONENT, "prometheus-rule.yaml"), "utf8")) as Resource & {
      spec: { groups: unknown };
    };
    expect(rule.kind).toBe("PrometheusRule");
    expect(rule.spec.groups).toEqual(readRuleGroups());
  });

  it("provisions every dashboard JSON in a ConfigMap Grafana's sidecar loads", () => {
    const cm = parse(readFileSync(join(COMPONENT, "grafana-dashboards.yaml"), "utf8")) as Resource & {
      data: Record<string, string>;
    };
    expect(cm.metadata.labels?.grafana_dashboard).toBe("1");
    const files = readdirSync(join(RULES_DIR, "dashboards")).filter((f) => f.endsWith(".json"));
    expect(Object.keys(cm.data).sort()).toEqual(files.sort());
    for (const f of files) {
      expect(cm.data[f]).toBe(readFileSync(join(RULES_DIR, "dashboards", f), "utf8"));
      const d = JSON.parse(cm.data[f] as string) as {
        uid: string;
        panels: Array<{ targets: Array<{ expr: string }> }>;
      };
      expect(d.uid).toMatch(/^taskmesh-/);
      expect(d.panels.flatMap((p) => p.targets).length).toBeGreaterThan(3);
    }
  });
});

describe("prod overlay (scale-out and observability)", () => {
  const prod = renderOverlay("prod");

  it("autoscales the gateway Deployment on CPU, from the replicas its PodDisruptionBudget protects", () => {
    const hpa = get<Resource & { spec: Record<string, never> }>(prod, "HorizontalPodAutoscaler", "gateway");
    const spec = hpa.spec as unknown as {
      scaleTargetRef: { kind: string; name: string };
      minReplicas: number;
      maxReplicas: number;
      metrics: Array<{ resource: { name: string; target: { averageUtilization: number } } }>;
    };
    expect(spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: "gateway" });
    const deployment = get<Resource & { spec: { replicas: number; template: { spec: { containers: unknown[] } } } }>(
      prod,
      "Deployment",
      "gateway",
    );
    expect(spec.minReplicas).toBe(deployment.spec.replicas);
    expect(spec.maxReplicas).toBeGreaterThan(spec.minReplicas);
    // A CPU utilization target needs a CPU request on the container.
    expect(spec.metrics[0]?.resource.name).toBe("cpu");
    const container = deployment.spec.template.spec.containers[0] as { resources: { requests: { cpu?: string } } };
    expect(container.resources.requests.cpu).toBeTruthy();

    const pdb = get<Resource & { spec: { maxUnavailable: number; selector: { matchLabels: Record<string, string> } } }>(
      prod,
      "PodDisruptionBudget",
      "gateway",
    );
    expect(pdb.spec.selector.matchLabels).toEqual({ app: "gateway" });
    // A drain at minReplicas still leaves a majority serving.
    expect(spec.minReplicas - pdb.spec.maxUnavailable).toBeGreaterThanOrEqual(2);
  });

  it("scrapes every service with the `service` label from the pod's app label, and carries the rules and dashboards", () => {
    const monitor = get<Resource & { spec: Record<string, never> }>(prod, "PodMonitor", "taskmesh") as unknown as {
      spec: {
        selector: { matchExpressions: Array<{ values: string[] }> };
        podMetricsEndpoints: Array<{ relabelings: Array<{ sourceLabels?: string[]; targetLabel: string }> }>;
      };
    };
    const apps = prod
      .filter((r) => r.kind === "Deployment")
      .map((r) => r.metadata.labels?.app)
      .filter((a): a is string => !!a);
    expect(monitor.spec.selector.matchExpressions[0]?.values.sort()).toEqual([...new Set(apps)].sort());
    expect(monitor.spec.podMetricsEndpoints[0]?.relabelings).toContainEqual({
      sourceLabels: ["__meta_kubernetes_pod_label_app"],
      targetLabel: "service",
    });
    expect(get(prod, "PrometheusRule", "taskmesh")).toBeTruthy();
    expect(get(prod, "ConfigMap", "taskmesh-dashboards").metadata.labels?.grafana_dashboard).toBe("1");
  });
});
