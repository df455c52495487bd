/**
 * The mesh as a cluster would run it, read off the rendered overlays together with the code that
 * runs inside: the calls the gateway makes besides its public API, how many times one call can be
 * tried across every layer that retries, and which gateway replica a user's calls reach.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { IDestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import type { IVirtualService } from "@kubernetes-models/istio/networking.istio.io/v1/VirtualService";
import type { IAuthorizationPolicy } from "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy";
import type { IRequestAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/RequestAuthentication";
import { Health } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { type ServiceTopology, serviceConfig, TOPOLOGY, USER_TOKEN_ISSUER } from "@taskmesh/platform";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import { describe, expect, it } from "vitest";
import { loadServices } from "./gen/descriptors.js";
import { REPO_ROOT } from "./gen/paths.js";
import { INGRESS, NAMESPACE, principal } from "./gen/policy.js";
import type { Resource } from "./lib/kustomize.js";
import { get, OVERLAYS, renderOverlay } from "./lib/overlays.js";

const descriptors = await loadServices();
const built = (Object.entries(TOPOLOGY) as [string, ServiceTopology][]).filter(([, t]) => t.built);
const edgeName = built.find(([, t]) => t.edge)?.[0] as string;
const source = (service: string) => readFileSync(join(REPO_ROOT, "services", service, "src/server.ts"), "utf8");

/** Does some ALLOW rule of `callee`'s policy let `caller`'s identity call `path`? */
function allows(rs: Resource[], caller: string, callee: string, path: string): boolean {
  const ap = get<IAuthorizationPolicy>(rs, "AuthorizationPolicy", callee);
  return (ap.spec?.rules ?? []).some(
    (rule) =>
      (rule.from ?? []).some((f) => f.source?.principals?.includes(principal(caller))) &&
      (rule.to ?? []).some((t) => t.operation?.paths?.includes(path)),
  );
}

/** Tries Envoy makes on one route: 1 + its retries (Istio's `attempts` counts retries). */
const routeTries = (vs: IVirtualService) =>
  1 + Math.max(0, ...(vs.spec?.http ?? []).map((r) => r.retries?.attempts ?? 2));

/** Most tries grpc-js makes for one call of any method under a service config. */
function clientTries(config: ReturnType<typeof serviceConfig>): number {
  return Math.max(1, ...config.methodConfig.map((m) => m.retryPolicy.maxAttempts));
}

describe.each(OVERLAYS)("overlay %s, as the cluster runs it", (overlay) => {
  const rs = renderOverlay(overlay);

  it("lets the gateway ask every backend it forwards to for its grpc.health.v1 readiness", () => {
    // backendReady(<client>, <public service>) in the gateway's server.ts: one Health/Check per backend.
    const checked = [...source(edgeName).matchAll(/backendReady\(\w+, (\w+)\)/g)].map((m) => m[1] as string);
    expect(checked.length).toBeGreaterThan(0);
    for (const service of checked) {
      const owner = built.find(
        ([name, t]) => name !== edgeName && (t.serves ?? []).some((s) => s.endsWith(`.${service}`)),
      )?.[0];
      expect(owner, `who serves ${service}`).toBeDefined();
      expect(allows(rs, edgeName, owner as string, "/grpc.health.v1.Health/Check"), `${edgeName} -> ${owner}`).toBe(
        true,
      );
    }
  });

  it("never retries RESOURCE_EXHAUSTED (a rate limit or shed load), in Envoy or in the client", () => {
    for (const vs of rs.filter((r) => r.kind === "VirtualService") as (Resource & IVirtualService)[]) {
      for (const route of vs.spec?.http ?? []) {
        expect(route.retries?.retryOn ?? "", `${vs.metadata.name}/${route.name}`).not.toMatch(/resource-exhausted/);
      }
    }
    for (const service of descriptors.values()) {
      for (const m of serviceConfig(service, {}).methodConfig) {
        expect(m.retryPolicy.retryableStatusCodes, service.typeName).not.toContain("RESOURCE_EXHAUSTED");
      }
    }
  });

  it("tries one call at most 3 times end to end: ingress × the app's client × the caller's sidecar", () => {
    // The apps' own grpc-js retries: every client a service builds passes retries: false in the mesh…
    const callers = readdirSync(join(REPO_ROOT, "services")).filter((s) => {
      try {
        return source(s).includes("createGrpcClient(");
      } catch {
        return false;
      }
    });
    expect(callers.length).toBeGreaterThan(1);
    for (const s of callers)
      expect(source(s), `services/${s}/src/server.ts`).toContain('retries: config.mesh !== "istio"');
    const deployment = get<IDeployment>(rs, "Deployment", edgeName);
    expect(deployment.spec?.template.spec?.containers[0]?.env).toContainEqual({
      name: "TASKMESH_MESH",
      value: "istio",
    });
    const appTries = Math.max(
      ...[...descriptors.values()].map((d) => clientTries(serviceConfig(d, { retries: false }))),
    );
    // …and the readiness client (default options) has no retry policy for Health/Check.
    const healthTries = clientTries(serviceConfig(Health, {}));

    const edge = routeTries(get<IVirtualService>(rs, "VirtualService", "edge"));
    const sidecar = (callee: string) => routeTries(get<IVirtualService>(rs, "VirtualService", callee));
    const paths: { path: string; tries: number }[] = [];
    for (const [caller, t] of built) {
      for (const callee of t.calls) {
        const inner = Math.max(appTries, healthTries) * sidecar(callee);
        paths.push({ path: `${caller} -> ${callee}`, tries: inner });
        if (caller === edgeName) paths.push({ path: `ingress -> ${caller} -> ${callee}`, tries: edge * inner });
      }
    }
    expect(paths.length).toBeGreaterThan(4);
    for (const p of paths) expect(p.tries, p.path).toBeLessThanOrEqual(3);
    // One layer retries: the edge does not, so the gateway's sidecar is not multiplied.
    expect(edge).toBe(1);
    expect(appTries).toBe(1);
  });

  it("routes one user's calls to one gateway replica, by the subject of the token the ingress verified", () => {
    const dr = get<IDestinationRule>(rs, "DestinationRule", edgeName);
    const header = dr.spec?.trafficPolicy?.loadBalancer?.consistentHash?.httpHeaderName;
    expect(header).toMatch(/^x-/);
    const atIngress = rs.filter(
      (r) =>
        r.kind === "RequestAuthentication" &&
        r.metadata.namespace === INGRESS.namespace &&
        JSON.stringify((r as IRequestAuthentication).spec?.selector?.matchLabels) === JSON.stringify(INGRESS.selector),
    ) as IRequestAuthentication[];
    expect(atIngress).toHaveLength(1);
    const rules = atIngress[0]?.spec?.jwtRules ?? [];
    expect(rules.map((r) => r.issuer)).toEqual([USER_TOKEN_ISSUER]);
    // `sub` is the user id the gateway keys its token buckets by (the verifier returns payload.sub).
    expect(rules[0]?.outputClaimToHeaders).toEqual([{ header, claim: "sub" }]);
    // Same key set as the gateway's own RequestAuthentication, so both accept the same tokens.
    const own = get<IRequestAuthentication>(rs, "RequestAuthentication", `${edgeName}-jwt`);
    expect(rules[0]?.jwksUri).toBe(own.spec?.jwtRules?.[0]?.jwksUri);
    expect(own.metadata?.namespace).toBe(NAMESPACE);
  });
});

describe("prod overlay", () => {
  it("runs several gateway replicas, which is why the hash above matters", () => {
    const d = get<IDeployment>(renderOverlay("prod"), "Deployment", edgeName);
    expect(d.spec?.replicas).toBeGreaterThan(1);
  });
});
