/**
 * What the rendered overlays mean, checked against the code: TOPOLOGY (services, ports, call
 * graph), the Protobuf descriptors (method paths, idempotency) and the token constants. These
 * read the kustomize output, not the generator, so a hand edit or a wrong patch fails here too.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { IDestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import type { IVirtualService } from "@kubernetes-models/istio/networking.istio.io/v1/VirtualService";
import type { IAuthorizationPolicy } from "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy";
import type { IPeerAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication";
import type { IRequestAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/RequestAuthentication";
import {
  JWKS_PATH,
  type ServiceName,
  type ServiceTopology,
  serverConfigSpec,
  serviceConfigSpec,
  TOPOLOGY,
  USER_TOKEN_AUDIENCE,
  USER_TOKEN_ISSUER,
} from "@taskmesh/platform";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IService } from "kubernetes-models/v1/Service";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { isIdempotent, loadServices, methodPath, resolveMethods } from "./gen/descriptors.js";
import { REPO_ROOT } from "./gen/paths.js";
import { ANONYMOUS_METHODS, NAMESPACE, NATS, TRACING_PROVIDER } from "./gen/policy.js";
import type { Resource } from "./lib/kustomize.js";
import { find, get, OVERLAYS, renderOverlay } from "./lib/overlays.js";

const descriptors = await loadServices();
const built = (Object.entries(TOPOLOGY) as [string, ServiceTopology][]).filter(([, t]) => t.built);
const spiffe = (sa: string) => `cluster.local/ns/${NAMESPACE}/sa/${sa}`;
const fqdn = (name: string) => `${name}.${NAMESPACE}.svc.cluster.local`;
const allMethods = [...descriptors.values()].flatMap((s) => s.methods);
const methodByPath = new Map(allMethods.map((m) => [methodPath(m), m]));

type HttpRoute = NonNullable<NonNullable<IVirtualService["spec"]>["http"]>[number];
type Rule = NonNullable<NonNullable<IAuthorizationPolicy["spec"]>["rules"]>[number];

/** "2s" / "1.5s" / "300ms" → milliseconds. */
function ms(duration: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(duration ?? "");
  if (!m) throw new Error(`not a duration: ${duration}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
}

/** Expected allow-list edges from TOPOLOGY: "caller -> callee path". */
function expectedCallGraph(): string[] {
  const edges: string[] = [];
  for (const [caller, t] of built) {
    expect(Object.keys(t.uses ?? {}).sort(), `TOPOLOGY.${caller}.uses must say what it calls on each callee`).toEqual(
      [...t.calls].sort(),
    );
    for (const callee of t.calls) {
      // Policies live with the callee: a declared callee that is not built yet has none to check.
      if (!built.some(([name]) => name === callee)) continue;
      for (const ref of t.uses?.[callee] ?? []) {
        for (const m of resolveMethods(descriptors, ref)) edges.push(`${caller} -> ${callee} ${methodPath(m)}`);
      }
    }
  }
  return [...new Set(edges)].sort();
}

/** Allow-list edges the AuthorizationPolicies grant to in-namespace workloads. */
function grantedCallGraph(resources: Resource[]): string[] {
  const edges: string[] = [];
  for (const r of resources.filter((x) => x.kind === "AuthorizationPolicy")) {
    const spec = (r as IAuthorizationPolicy).spec ?? {};
    const callee = spec.selector?.matchLabels?.app;
    if (!callee || callee === NATS.name) continue;
    for (const rule of spec.rules ?? []) {
      const principals = (rule.from ?? []).flatMap((f) => f.source?.principals ?? []);
      for (const p of principals.filter((x) => x.startsWith(`cluster.local/ns/${NAMESPACE}/sa/`))) {
        const caller = p.split("/").pop();
        for (const path of (rule.to ?? []).flatMap((t) => t.operation?.paths ?? [])) {
          edges.push(`${caller} -> ${callee} ${path}`);
        }
      }
    }
  }
  return [...new Set(edges)].sort();
}

describe.each(OVERLAYS)("overlay %s", (overlay) => {
  const rs = renderOverlay(overlay);

  it("puts everything in the taskmesh namespace, labelled for sidecar injection", () => {
    const ns = get(rs, "Namespace", NAMESPACE);
    expect(ns.metadata.labels?.["istio-injection"]).toBe("enabled");
    // But the ingress's RequestAuthentication (the hash header for the edge): a selector reaches only its own namespace.
    const ingressJwt = (x: Resource) => x.kind === "RequestAuthentication" && x.metadata.namespace === "istio-system";
    expect(rs.filter(ingressJwt).map((x) => x.metadata.name)).toEqual(["taskmesh-ingress-jwt"]);
    for (const r of rs.filter((x) => x.kind !== "Namespace" && !ingressJwt(x)))
      expect(r.metadata.namespace, r.kind).toBe(NAMESPACE);
  });

  it.each(built.map(([n]) => n))("has the six resources of %s", (name) => {
    for (const kind of [
      "Deployment",
      "Service",
      "ServiceAccount",
      "DestinationRule",
      "VirtualService",
      "AuthorizationPolicy",
    ]) {
      expect(find(rs, kind, name), `${kind} ${name}`).toBeDefined();
    }
  });

  it.each(built)("gives %s the ports, probes, labels and env of its code", (name, t) => {
    const svc = get<IService>(rs, "Service", name);
    const grpc = svc.spec?.ports?.find((p) => p.name === "grpc");
    expect(grpc).toMatchObject({ port: t.grpcPort, targetPort: t.grpcPort, appProtocol: "grpc" });
    if (t.httpPort !== undefined) {
      expect(svc.spec?.ports?.find((p) => p.port === t.httpPort)?.appProtocol).toBe("http");
    }

    const d = get<IDeployment>(rs, "Deployment", name);
    const pod = d.spec?.template;
    expect(pod?.metadata?.labels).toMatchObject({ app: name, version: "v1" });
    expect(d.spec?.selector.matchLabels).toEqual({ app: name, version: "v1" });
    expect(pod?.spec?.serviceAccountName).toBe(name);
    const c = pod?.spec?.containers[0];
    expect(c?.ports?.map((p) => p.containerPort).sort()).toEqual(
      [t.grpcPort, ...(t.httpPort !== undefined ? [t.httpPort] : []), t.metricsPort].sort(),
    );
    expect(c?.readinessProbe?.grpc).toEqual({ port: t.grpcPort });
    expect(c?.livenessProbe?.grpc).toEqual({ port: t.grpcPort, service: "liveness" });
    expect(c?.startupProbe?.grpc?.port).toBe(t.grpcPort);
    expect(c?.resources?.requests?.memory).toBeDefined();
    expect(c?.resources?.limits?.memory).toBeDefined();

    const env = new Map((c?.env ?? []).map((e) => [e.name, e]));
    const value = (n: string) => env.get(n)?.value;
    expect(value("GRPC_PORT")).toBe(String(t.grpcPort));
    expect(value("HOST")).toBe("0.0.0.0");
    expect(value("TASKMESH_MESH")).toBe("istio");
    // Every service but the edge (which never uses a service token) gets the secret, from a Secret.
    expect(env.get("TASKMESH_SERVICE_SECRET")?.valueFrom?.secretKeyRef?.name).toBe(
      t.edge ? undefined : "taskmesh-service-secret",
    );
    expect(value("JWKS_URL")).toBe(
      t.jwks ? `http://${fqdn("users")}:${TOPOLOGY.users.httpPort}${JWKS_PATH}` : undefined,
    );
    expect(value("NATS_URL")).toBe(t.nats ? `nats://${fqdn(NATS.name)}:${NATS.clientPort}` : undefined);
    for (const callee of t.calls) {
      const port = TOPOLOGY[callee as keyof typeof TOPOLOGY].grpcPort;
      expect(value(`${callee.toUpperCase()}_ADDR`)).toBe(`${fqdn(callee)}:${port}`);
    }
    if (t.sqlite) {
      const dbPath = value("DB_PATH") ?? "";
      const mount = c?.volumeMounts?.find((m) => dbPath.startsWith(`${m.mountPath}/`));
      const volume = pod?.spec?.volumes?.find((v) => v.name === mount?.name);
      expect(volume?.persistentVolumeClaim?.claimName, "SQLite must live on a persistent volume").toBeDefined();
      expect(find(rs, "PersistentVolumeClaim", volume?.persistentVolumeClaim?.claimName ?? "")).toBeDefined();
      expect(d.spec?.strategy?.type, "a single SQLite writer: never two pods on the file").toBe("Recreate");
    }
  });

  it.each(built)(
    "exposes %s's metrics to Prometheus through Istio's metrics merging, and spans to Jaeger",
    (name, t) => {
      const d = get<IDeployment>(rs, "Deployment", name);
      const pod = d.spec?.template;
      const c = pod?.spec?.containers[0];
      expect(c?.ports?.find((p) => p.name === "metrics")?.containerPort).toBe(t.metricsPort);
      const env = new Map((c?.env ?? []).map((e) => [e.name, e.value]));
      expect(env.get("METRICS_PORT")).toBe(String(t.metricsPort));
      // Every interface, like the gRPC port: the sidecar agent scrapes http://localhost:<port>/metrics,
      // which may resolve to either loopback address.
      expect(env.get("METRICS_HOST")).toBe("0.0.0.0");
      expect(pod?.metadata?.annotations).toMatchObject({
        "prometheus.io/scrape": "true",
        "prometheus.io/port": String(t.metricsPort),
        "prometheus.io/path": "/metrics",
      });
      // Only inside the pod: not a port of the Service, and no AuthorizationPolicy lets anyone reach it
      // (Prometheus scrapes the sidecar agent's :15020, which Istio does not intercept).
      const svc = get<IService>(rs, "Service", name);
      expect(svc.spec?.ports?.map((p) => p.port)).not.toContain(t.metricsPort);
      for (const ap of rs.filter((r) => r.kind === "AuthorizationPolicy") as (Resource & IAuthorizationPolicy)[]) {
        const ports = (ap.spec?.rules ?? []).flatMap((r) => (r.to ?? []).flatMap((x) => x.operation?.ports ?? []));
        expect(ports, `${ap.metadata?.name} opens a metrics port`).not.toContain(String(t.metricsPort));
      }
      // Spans go to the Jaeger that the sidecars' Telemetry provider sends to, over OTLP/HTTP.
      const install = parse(readFileSync(join(REPO_ROOT, "mesh/istio/install.yaml"), "utf8"));
      const provider = install.spec.meshConfig.extensionProviders.find(
        (p: { name: string }) => p.name === TRACING_PROVIDER,
      );
      expect(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")).toBe(`http://${provider.opentelemetry.service}:4318`);
    },
  );

  it.each(built.map(([n]) => n))("reads in %s's config every env var its Deployment sets", (name) => {
    const config = join(REPO_ROOT, "services", name, "src/config.ts");
    if (!existsSync(config)) return;
    // The code, not its comments: a name only mentioned in a comment is not read.
    const source = readFileSync(config, "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/\/\/.*$/gm, "");
    // The shared fields a config spreads from the platform (serviceConfigSpec / serverConfigSpec).
    const shared = new Set([
      ...(source.includes("serviceConfigSpec(") ? Object.keys(serviceConfigSpec(name as ServiceName)) : []),
      ...(source.includes("serverConfigSpec(") ? Object.keys(serverConfigSpec(name as ServiceName)) : []),
    ]);
    // Read by the platform's events kit when it declares the streams (streams.ts), for every service.
    const platformWide = new Set(["NATS_STREAM_REPLICAS"]);
    // Telemetry is read by the platform's register module (the first import of every main.ts), not by config.ts.
    const dir = join(REPO_ROOT, "packages/platform/src/telemetry");
    const telemetry = readdirSync(dir)
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
      .map((f) => readFileSync(join(dir, f), "utf8"))
      .join("\n");
    const mainTs = readFileSync(join(REPO_ROOT, "services", name, "src/main.ts"), "utf8");
    const readByTelemetry = (n: string) =>
      mainTs.includes('import "@taskmesh/platform/telemetry-register"') && telemetry.includes(n);
    const env = get<IDeployment>(rs, "Deployment", name).spec?.template.spec?.containers[0]?.env ?? [];
    const unread = env
      .map((e) => e.name)
      .filter((n) => !platformWide.has(n) && !shared.has(n) && !source.includes(`${n}:`) && !readByTelemetry(n));
    expect(unread, `services/${name}/src/config.ts does not read these`).toEqual([]);
  });

  it.each(built.map(([n]) => n))("runs %s locked down and drains before it is killed", (name) => {
    const pod = get<IDeployment>(rs, "Deployment", name).spec?.template.spec;
    expect(pod?.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(pod?.securityContext?.runAsUser).toBeGreaterThan(0);
    const sc = pod?.containers[0]?.securityContext;
    expect(sc?.capabilities?.drop).toEqual(["ALL"]);
    expect(sc?.allowPrivilegeEscalation).toBe(false);
    // dev lets Tilt's live_update write into the container; every other overlay is read-only.
    expect(sc?.readOnlyRootFilesystem).toBe(!(overlay === "dev" || overlay === "drill"));
    // GrpcServer drains for 10 s by default, the sidecar for its terminationDrainDuration.
    expect(pod?.terminationGracePeriodSeconds).toBeGreaterThan(20);
  });

  it("enforces mutual TLS for the whole namespace", () => {
    const pa = get<IPeerAuthentication>(rs, "PeerAuthentication", "default");
    expect(pa.spec?.selector).toBeUndefined();
    expect(pa.spec?.mtls?.mode).toBe("STRICT");
    // The one exception: the JWKS port, which istiod (no sidecar) fetches in plain text.
    for (const r of rs.filter((x) => x.kind === "PeerAuthentication" && x.metadata.name !== "default")) {
      const ports = Object.entries((r as IPeerAuthentication).spec?.portLevelMtls ?? {});
      expect(ports).toEqual([[String(TOPOLOGY.users.httpPort), { mode: "PERMISSIVE" }]]);
    }
  });

  it.each(built.map(([n]) => n))("sends to %s over mTLS with a bulkhead and outlier ejection", (name) => {
    const dr = get<IDestinationRule>(rs, "DestinationRule", name);
    expect(dr.spec?.host).toBe(fqdn(name));
    expect(dr.spec?.trafficPolicy?.tls?.mode).toBe("ISTIO_MUTUAL");
    expect(dr.spec?.trafficPolicy?.connectionPool?.http?.http2MaxRequests).toBeGreaterThan(0);
    expect(dr.spec?.trafficPolicy?.outlierDetection?.baseEjectionTime).toBeDefined();
  });

  it("retries only idempotent methods, within the route timeout, on retriable codes", () => {
    const retriable = new Set(["connect-failure", "refused-stream", "unavailable", "cancelled", "resource-exhausted"]);
    const vss = rs.filter((r) => r.kind === "VirtualService") as (Resource & IVirtualService)[];
    expect(vss.length).toBe(built.length + 1);
    for (const vs of vss) {
      for (const route of vs.spec?.http ?? []) {
        const where = `${vs.metadata?.name}/${route.name}`;
        // Istio retries twice when a route says nothing: every route must say.
        expect(route.retries, `${where} must state its retries`).toBeDefined();
        const attempts = route.retries?.attempts ?? 0;
        if (attempts === 0) continue;
        expect(route.match?.length, `${where} retries without a match (all methods)`).toBeGreaterThan(0);
        for (const match of route.match ?? []) {
          const path = match.uri?.exact ?? "";
          const method = methodByPath.get(path);
          const jwks = path === JWKS_PATH && match.method?.exact === "GET";
          expect(jwks || (method !== undefined && isIdempotent(method)), `${where} retries ${path}`).toBe(true);
        }
        expect(
          ms(route.retries?.perTryTimeout) * (attempts + 1),
          `${where}: tries × perTryTimeout`,
        ).toBeLessThanOrEqual(ms(route.timeout));
        for (const code of (route.retries?.retryOn ?? "").split(",")) expect(retriable, where).toContain(code);
      }
    }
  });

  it("retries every idempotent unary method a service serves", () => {
    expect(built.some(([, t]) => (t.serves ?? []).length > 0)).toBe(true);
    for (const [name, t] of built) {
      const vs = get<IVirtualService>(rs, "VirtualService", name);
      const retried = new Set(
        (vs.spec?.http ?? [])
          .filter((r: HttpRoute) => (r.retries?.attempts ?? 0) > 0)
          .flatMap((r) => (r.match ?? []).map((m) => m.uri?.exact)),
      );
      const idempotent = (t.serves ?? [])
        .flatMap((ref) => resolveMethods(descriptors, ref))
        .filter((m) => m.methodKind === "unary" && isIdempotent(m))
        .map(methodPath);
      for (const p of idempotent) expect(retried, `${name} ${p}`).toContain(p);
    }
  });

  it("allows exactly the call graph of TOPOLOGY, by SPIFFE identity and method path", () => {
    expect(grantedCallGraph(rs)).toEqual(expectedCallGraph());
    const denyAll = get<IAuthorizationPolicy>(rs, "AuthorizationPolicy", "deny-all");
    expect(denyAll.spec ?? {}).toEqual({});
    for (const [name] of built) {
      const ap = get<IAuthorizationPolicy>(rs, "AuthorizationPolicy", name);
      expect(ap.spec?.selector?.matchLabels).toEqual({ app: name });
      expect(ap.spec?.action ?? "ALLOW").toBe("ALLOW");
      // A rule without a source is open to anyone: only the public JWKS document may have one.
      for (const rule of ap.spec?.rules ?? []) {
        if (rule.from) continue;
        expect(rule.to).toEqual([
          { operation: { ports: [String(TOPOLOGY.users.httpPort)], methods: ["GET"], paths: [JWKS_PATH] } },
        ]);
      }
    }
  });

  it("lets only the services that use NATS reach its client port", () => {
    const ap = get<IAuthorizationPolicy>(rs, "AuthorizationPolicy", NATS.name);
    const onPort = (port: number) =>
      (ap.spec?.rules ?? [])
        .filter((r: Rule) => r.to?.some((t) => t.operation?.ports?.includes(String(port))))
        .flatMap((r) => (r.from ?? []).flatMap((f) => f.source?.principals ?? []))
        .sort();
    expect(onPort(NATS.clientPort)).toEqual(
      built
        .filter(([, t]) => t.nats)
        .map(([n]) => spiffe(n))
        .sort(),
    );
    expect(onPort(NATS.clusterPort)).toEqual([spiffe(NATS.name)]);
    expect(onPort(NATS.monitorPort)).toEqual([]);
  });

  it("verifies user tokens at the edge with the users JWKS, issuer and audience of the code", () => {
    const [edge] = built.filter(([, t]) => t.edge);
    expect(edge).toBeDefined();
    const [edgeName, edgeTopo] = edge as [string, ServiceTopology];
    const ra = get<IRequestAuthentication>(rs, "RequestAuthentication", `${edgeName}-jwt`);
    expect(ra.spec?.selector?.matchLabels).toEqual({ app: edgeName });
    expect(ra.spec?.jwtRules).toEqual([
      {
        issuer: USER_TOKEN_ISSUER,
        audiences: [USER_TOKEN_AUDIENCE],
        jwksUri: `http://${fqdn("users")}:${TOPOLOGY.users.httpPort}${JWKS_PATH}`,
        forwardOriginalToken: true,
      },
    ]);
    // Paired: a request without a valid token is otherwise let through by RequestAuthentication.
    const ap = get<IAuthorizationPolicy>(rs, "AuthorizationPolicy", edgeName);
    const pathsOf = (rules: Rule[]) => rules.flatMap((r) => (r.to ?? []).flatMap((t) => t.operation?.paths ?? []));
    const withToken = (ap.spec?.rules ?? []).filter((r) =>
      r.from?.some((f) => f.source?.requestPrincipals?.includes(`${USER_TOKEN_ISSUER}/*`)),
    );
    const withoutToken = (ap.spec?.rules ?? []).filter((r) => !withToken.includes(r));
    const served = (edgeTopo.serves ?? []).flatMap((ref) => resolveMethods(descriptors, ref)).map(methodPath);
    for (const a of ANONYMOUS_METHODS) expect(served).toContain(a);
    expect(pathsOf(withToken).sort()).toEqual(served.filter((p) => !ANONYMOUS_METHODS.includes(p)).sort());
    const open = pathsOf(withoutToken).filter((p) => p.startsWith("/taskmesh."));
    expect(open.sort()).toEqual([...ANONYMOUS_METHODS].sort());
    // The static-files rule cannot reach an RPC (Connect may GET a side-effect-free method).
    for (const r of withoutToken.filter((x) => x.to?.some((t) => t.operation?.methods))) {
      expect(r.to?.[0]?.operation?.notPaths).toEqual(expect.arrayContaining(["/taskmesh.*", "/grpc.*"]));
    }
  });

  it("routes the ingress Gateway to the edge service and traces to the provider Istio is installed with", () => {
    const gw = get(rs, "Gateway", "taskmesh-gateway") as Resource & { spec: { selector: Record<string, string> } };
    expect(gw.spec.selector).toEqual({ istio: "ingressgateway" });
    const edge = get<IVirtualService>(rs, "VirtualService", "edge");
    expect(edge.spec?.gateways).toEqual(["taskmesh-gateway"]);
    const edgeName = built.find(([, t]) => t.edge)?.[0] ?? "";
    for (const r of edge.spec?.http ?? []) expect(r.route?.[0]?.destination?.host).toBe(fqdn(edgeName));

    const install = parse(readFileSync(join(REPO_ROOT, "mesh/istio/install.yaml"), "utf8"));
    const providers = install.spec.meshConfig.extensionProviders.map((p: { name: string }) => p.name);
    const telemetry = get(rs, "Telemetry", "tracing") as Resource & {
      spec: { tracing: { providers: { name: string }[] }[] };
    };
    expect(telemetry.spec.tracing[0]?.providers).toEqual([{ name: TRACING_PROVIDER }]);
    expect(providers).toContain(TRACING_PROVIDER);
  });
});

describe("prod overlay", () => {
  const rs = renderOverlay("prod");

  it("scales stateless services behind PodDisruptionBudgets and keeps SQLite owners single writers", () => {
    for (const [name, t] of built) {
      const d = get<IDeployment>(rs, "Deployment", name);
      if (t.sqlite) {
        expect(d.spec?.replicas, name).toBe(1);
        expect(find(rs, "PodDisruptionBudget", name), name).toBeUndefined();
      } else {
        expect(d.spec?.replicas, name).toBeGreaterThanOrEqual(2);
        expect(find(rs, "PodDisruptionBudget", name), name).toBeDefined();
      }
      expect(d.spec?.template.spec?.containers[0]?.image).toMatch(/^registry\.example\.com\/taskmesh\/.+:.+$/);
    }
  });

  it("runs a three-node NATS cluster whose streams the services replicate three times", () => {
    const sts = get<IStatefulSet>(rs, "StatefulSet", NATS.name);
    expect(sts.spec?.replicas).toBe(3);
    expect(sts.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage).toBeDefined();
    expect(find(rs, "PodDisruptionBudget", NATS.name)).toBeDefined();
    const conf = get<IConfigMap>(rs, "ConfigMap", "nats-config").data?.["nats.conf"] ?? "";
    for (let i = 0; i < 3; i++) expect(conf).toContain(`nats-${i}.nats-headless.${NAMESPACE}.svc.cluster.local:6222`);
    for (const [name, t] of built.filter(([, x]) => x.nats)) {
      const env = get<IDeployment>(rs, "Deployment", name).spec?.template.spec?.containers[0]?.env ?? [];
      expect(env.find((e) => e.name === "NATS_STREAM_REPLICAS")?.value, name).toBe("3");
      expect(t.nats).toBe(true);
    }
  });
});

describe("dev overlay", () => {
  it("keeps one NATS server with JetStream storage on a volume claim", () => {
    const rs = renderOverlay("dev");
    const sts = get<IStatefulSet>(rs, "StatefulSet", NATS.name);
    expect(sts.spec?.replicas).toBe(1);
    expect(sts.spec?.volumeClaimTemplates?.[0]?.metadata?.name).toBe("data");
    expect(get<IConfigMap>(rs, "ConfigMap", "nats-config").data?.["nats.conf"]).toContain("jetstream");
  });
});

describe("drill overlay (canary + fault injection)", () => {
  const rs = renderOverlay("drill");

  it("shifts a weight of tasks to subset v2, which exists and has pods", () => {
    const vs = get<IVirtualService>(rs, "VirtualService", "tasks");
    for (const route of vs.spec?.http ?? []) {
      const weights = route.route?.map((d) => [d.destination?.subset, d.weight]);
      expect(weights?.map(([s]) => s)).toEqual(["v1", "v2"]);
      expect(weights?.reduce((sum, [, w]) => sum + Number(w), 0)).toBe(100);
    }
    const subsets = get<IDestinationRule>(rs, "DestinationRule", "tasks").spec?.subsets?.map((s) => s.name);
    expect(subsets).toEqual(["v1", "v2"]);
    const v2 = get<IDeployment>(rs, "Deployment", "tasks-v2");
    expect(v2.spec?.template.metadata?.labels).toEqual({ app: "tasks", version: "v2" });
  });

  it("delays and aborts a share of calls to tasks, and only to tasks", () => {
    for (const vs of rs.filter((r) => r.kind === "VirtualService") as (Resource & IVirtualService)[]) {
      for (const route of vs.spec?.http ?? []) {
        if (vs.metadata?.name === "tasks") {
          expect(route.fault?.delay?.fixedDelay).toBeDefined();
          expect(route.fault?.abort?.grpcStatus).toBe("UNAVAILABLE");
        } else {
          expect(route.fault).toBeUndefined();
        }
      }
    }
  });
});
