/**
 * The AuthorizationPolicies against the call graph recorded from the code (mesh/call-graph.json,
 * `npm run mesh:calls`: every outgoing gRPC call the services' clients made while the suites that
 * run them as processes ran). A recorded call the policies deny would fail in the mesh; an allowed
 * call nobody made is an opening to close, unless listed below with the reason it was not made.
 * TOPOLOGY's declared calls are checked against the recording the same way.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { IAuthorizationPolicy } from "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy";
import { type ServiceTopology, TOPOLOGY } from "@taskmesh/platform";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./gen/paths.js";
import { NAMESPACE, NATS } from "./gen/policy.js";
import type { Resource } from "./lib/kustomize.js";
import { renderOverlay } from "./lib/overlays.js";

interface Call {
  caller: string;
  callee: string;
  method: string;
}
const recording = JSON.parse(readFileSync(join(REPO_ROOT, "mesh/call-graph.json"), "utf8")) as {
  suites: string[];
  calls: Call[];
};
const edge = (c: Call) => `${c.caller} -> ${c.callee} ${c.method}`;
const recorded = new Set(recording.calls.map(edge));
const built = (Object.entries(TOPOLOGY) as [string, ServiceTopology][]).filter(([, t]) => t.built);

/**
 * Allowed by the policies but not made while the suites ran, each with why it stays allowed.
 * Keep this short: a line here is a path the tests do not exercise.
 */
const ALLOWED_UNEXERCISED: Record<string, string> = {};

/** Caller → callee method path edges the AuthorizationPolicies grant to in-namespace workloads. */
function granted(resources: Resource[]): string[] {
  const out: string[] = [];
  for (const r of resources.filter((x) => x.kind === "AuthorizationPolicy")) {
    const spec = (r as IAuthorizationPolicy).spec ?? {};
    const callee = spec.selector?.matchLabels?.app;
    if (!callee || callee === NATS.name) continue;
    for (const rule of spec.rules ?? []) {
      const principals = (rule.from ?? []).flatMap((f) => f.source?.principals ?? []);
      for (const p of principals.filter((x) => x.startsWith(`cluster.local/ns/${NAMESPACE}/sa/`))) {
        for (const path of (rule.to ?? []).flatMap((t) => t.operation?.paths ?? [])) {
          out.push(`${p.split("/").pop()} -> ${callee} ${path}`);
        }
      }
    }
  }
  return [...new Set(out)].sort();
}

describe("the call graph recorded from the code (mesh/call-graph.json)", () => {
  const allowed = new Set(granted(renderOverlay("dev")));

  it("was recorded over the suites that run the services, and names only services", () => {
    expect(recording.suites).toEqual(expect.arrayContaining(["tests/e2e", "tests/faults"]));
    expect(recording.calls.length).toBeGreaterThan(10);
    const names = new Set(built.map(([n]) => n));
    for (const c of recording.calls) {
      expect(names, edge(c)).toContain(c.caller);
      expect(names, edge(c)).toContain(c.callee);
    }
  });

  it("is allowed by the AuthorizationPolicies, call by call", () => {
    expect([...recorded].filter((e) => !allowed.has(e))).toEqual([]);
  });

  it("leaves no allowed call unexercised, except those listed with a reason", () => {
    const unexercised = [...allowed].filter((e) => !recorded.has(e));
    expect(unexercised.filter((e) => !(e in ALLOWED_UNEXERCISED))).toEqual([]);
    // A listed call that is now recorded comes off the list.
    expect(Object.keys(ALLOWED_UNEXERCISED).filter((e) => recorded.has(e))).toEqual([]);
  });

  it("confirms every call TOPOLOGY declares (caller → callee), and TOPOLOGY declares every recorded one", () => {
    const declared = new Set(built.flatMap(([caller, t]) => t.calls.map((callee) => `${caller} -> ${callee}`)));
    const made = new Set(recording.calls.map((c) => `${c.caller} -> ${c.callee}`));
    expect([...made].filter((e) => !declared.has(e))).toEqual([]);
    expect([...declared].filter((e) => !made.has(e))).toEqual([]);
  });
});
